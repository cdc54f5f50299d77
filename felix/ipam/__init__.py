"""Calico IPAM: the pure planner (`allocator`, `view`) over the stored records (`calico.ipam`)
and the loop that applies its steps to a key-value store with compare-and-swap (`store`)."""
