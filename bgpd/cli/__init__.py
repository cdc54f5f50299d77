"""Command-line entry points: bgpctl and the control-socket client it uses."""
