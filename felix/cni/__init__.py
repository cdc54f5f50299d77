"""The CNI plugin (`felix-cni`): the request and result (`request`), the ADD/DEL/CHECK
logic (`plugin`), and the namespace plumbing and entry point (`driver`)."""
