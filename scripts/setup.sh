#!/usr/bin/env bash
# Install what pybgpd and its tests need on Debian 12, as root: the real BGP daemons the
# interop tests run against (BIRD 2, FRR, GoBGP; BIRD 1.6 unpacked in /opt/bird1.6), etcd,
# network tools, and the Python package with its test extras (for the `python3` on PATH).
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/setup.sh: run as root (apt-get, and the tests need network namespaces)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# systemd: systemd-analyze and systemd-sysusers for the unit tests (not to run it as PID 1);
# strace: the sandbox tests record the daemons' system calls.
PACKAGES=(bird2 frr gobgpd etcd-server etcd-client openssl iproute2 iputils-ping nftables procps
          psmisc tcpdump python3-pip systemd strace)
# Daemons the packages would start as system services; the tests start their own instances.
SERVICES=(bird frr etcd)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    # policy-rc.d exit 101 keeps invoke-rc.d/deb-systemd-invoke from starting services during
    # the install; leave an existing one (containers ship one) alone.
    own_policy=false
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=true
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
    if "$own_policy"; then
        rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
fi

# BIRD 1.6 (calico-node's BIRD version): the BIRD-socket tests use its birdc and bird, the
# BGPFilter conformance tests (tests/interop/test_bird16_filters.py) its bird and bird6 as the
# oracle. Debian's `bird` package (1.6.8) conflicts with bird2, so it is never installed: its
# files are unpacked under a private prefix instead.
BIRD16_PREFIX=/opt/bird1.6
if [ ! -x "$BIRD16_PREFIX/usr/sbin/bird" ] || [ ! -x "$BIRD16_PREFIX/usr/sbin/bird6" ] \
    || [ ! -x "$BIRD16_PREFIX/usr/sbin/birdc" ]; then
    work=$(mktemp -d)
    (
        cd "$work"
        chown _apt "$work" 2>/dev/null || true  # apt-get download drops to _apt
        if ! apt-get download bird >/dev/null 2>&1; then
            apt-get update
            apt-get download bird
        fi
        rm -rf "$BIRD16_PREFIX.new"
        dpkg-deb -x bird_*.deb "$BIRD16_PREFIX.new"
    )
    rm -rf "$work" "$BIRD16_PREFIX"
    mv "$BIRD16_PREFIX.new" "$BIRD16_PREFIX"
    "$BIRD16_PREFIX/usr/sbin/bird" --version
fi

# Whatever started them (an earlier install, a boot), no packaged daemon may keep running: it
# would hold ports (179, 2379) or routes the tests expect to own.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
    for svc in "${SERVICES[@]}"; do
        if systemctl is-active --quiet "$svc"; then
            systemctl stop "$svc"
        fi
    done
else
    for svc in "${SERVICES[@]}"; do
        if [ -x "/etc/init.d/$svc" ]; then
            "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
        fi
    done
fi

# The system python3 may be Debian's (externally managed, PEP 668) or a pyenv/venv one; either
# way this machine's python3 is the one the tests use.
PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore \
    python3 -m pip install --disable-pip-version-check -q -e '.[test]'
# An editable install compiles nothing, and a daemon under ProtectSystem=strict (or with
# PYTHONDONTWRITEBYTECODE) cannot write its bytecode: without this every start compiles
# every module again (0.2 CPU-s of bgpd's 0.5).
python3 -m compileall -q bgpd calico common felix >/dev/null
# pyenv only finds new console scripts (bgpd, bgpctl, exabgp) through shims made by a rehash.
if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash
fi
