"""felix's dataplane: the cluster routes, tunnel devices and VTEP entries Calico's Felix
programs (`cluster`: what is wanted; `kernel`: the requests that get the kernel there, both
pure) and the shell that reads and writes them over rtnetlink (`routes_driver`)."""
