"""Lab topologies (containerlab files), the network-namespace runner (`labs.run`), the demo
(`labs/demo.py`) and the lab harness they, bench/ and the interop tests share (`labs.harness`)."""
