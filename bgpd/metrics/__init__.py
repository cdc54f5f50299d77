"""Prometheus metrics (`bgpd --metrics-listen ADDR:PORT`, off by default).

`histogram.py` accumulates timings the daemon observes (FIB batches, event-loop lag) with no
dependency; `collector.py` turns a `MetricsSnapshot`, read from the daemon when scraped, into
metric families, so nothing on the routing path calls a metrics library; `driver.py` serves
them over HTTP on the daemon's event loop.
"""
