#!/usr/bin/env bash
# The README's first command: install everything (as root, Debian 12), then run the demo lab
# (three bgpd nodes in a Calico node-to-node mesh plus a BIRD top-of-rack router).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec python3 labs/demo.py
