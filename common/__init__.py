"""What both daemons need of their process, not of Calico: structured logging (`log`),
systemd's notify protocol (`sdnotify`) and rtnetlink (`netlink`: the kernel's routing table,
links, addresses and neighbours)."""
