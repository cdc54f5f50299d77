"""Calico IPAM: the stored records (`records`), the pure planner (`allocator`, `view`) and
the loop that applies its steps to a key-value store with compare-and-swap (`store`)."""
