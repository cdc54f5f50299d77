"""Policy: Calico's NetworkPolicy, GlobalNetworkPolicy, Profile and Tier semantics, pure.

`rules` turns v3 resources into the rules felix evaluates, `endpoints` gives endpoints
their labels, `index` keeps the node's model current one change at a time, and `evaluate`
decides what happens to a packet (the `felix policy explain` command). The nftables
rendering of the same model is in felix/dataplane/.
"""
