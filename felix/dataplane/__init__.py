"""felix's dataplane, in two parts that share no state.

Routing (rtnetlink): the cluster routes, tunnel devices and VTEP entries Calico's Felix
programs (`cluster`: what is wanted; `kernel`: the requests that get the kernel there, both
pure) and `routes_driver`, the shell that reads and writes them and the workload routes.

Policy (nftables): the policy model rendered as one table, `inet felix` (`nft_compile`,
pure), and `nft_driver`, which applies it as atomic `nft -f` transactions in the node's
network namespace and notices changes made behind felix's back.
"""
