"""The network-namespace lab harness the interop tests, the benchmarks and the labs run on.

- `lab`: namespaces, veth links, bridges, tracked processes (`Lab`, `Node`, `cleanup_stale`,
  `stop_process`, `missing_tools`);
- `wait`: `wait_for` / `holds_for`, deadlines instead of bare sleeps;
- `peers`: real BGP daemons in lab nodes (`BirdPeer`, `FrrPeer`, `GobgpPeer`, `ExabgpPeer`);
- `bgpd_node`, `felix_node`: bgpd (and bgpctl), felix and its CNI plugin in a lab node;
- `etcd_server`: a real etcd on loopback; `calico_cluster`: multi-node Calico resources;
- `fresh_compare`: a bgpd's RIB, FIB and resources against a fresh start's.

Import it as `labs.harness` (the editable install provides `labs`; in a worktree,
`PYTHONPATH=$PWD`).
"""
