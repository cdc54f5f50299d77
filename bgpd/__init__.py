"""pybgpd: a pure-Python BGP speaker for Calico-style node networking."""

__version__ = "0.1.0"
