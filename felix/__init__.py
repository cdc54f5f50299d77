"""felix: the node agent beside bgpd, as Felix and Calico's CNI plugin are beside BIRD.

`ipam/` is Calico's IPAM (pure planner + compare-and-swap store loop), `cni/` the CNI
plugin (`felix-cni`), `workload.py` the WorkloadEndpoint records both write and read, and
`driver.py` the daemon (`felix`): workload routes, status under a lease, tunnel address.
felix meets bgpd only in the datastore (read through the shared `calico` package) and in the
kernel routing table.
"""
