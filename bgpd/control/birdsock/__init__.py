"""A control socket speaking BIRD's CLI protocol, so BIRD's own clients (`birdc`, `birdcl`)
and what is built on them (calico-node's `-bird-ready` / `-bird-live` probes, `calicoctl node
status`) read bgpd's sessions and routes as they read BIRD's.

`replies` encodes numbered reply lines, `commands` parses a command line as BIRD's grammar
does (the read-only subset), `dialect` holds what BIRD 1.6 and BIRD 2 print differently,
`protocol` runs one client connection without I/O, and `driver` is the asyncio shell.
"""
