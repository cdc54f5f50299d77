"""Calico's golden confd scenarios as behaviour, for the conformance tests.

`scenarios` finds the corpus (`../shared/conformance/calico-confd`, or $PYBGPD_CONFORMANCE)
and plans a scenario's node as bgpd does; `birdfilter` evaluates the filters of a golden
bird.cfg / bird6.cfg on one route as BIRD 1.6 would (the unit tests' oracle); `routes` makes
the route corpus a scenario is checked on; `bird16` runs BIRD 1.6 itself on a golden
configuration in a lab (the interop tests' oracle, the one that counts).
"""
