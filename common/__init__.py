"""What both daemons need of their process, not of Calico: structured logging (`log`) and
systemd's notify protocol (`sdnotify`)."""
