"""Lab topologies (containerlab files) and the network-namespace runner (`labs.run`)."""
