#!/usr/bin/env bash
# Install bgpd.service and felix.service, as root: the `pybgpd` system user and group they
# run as (systemd-sysusers, from systemd/pybgpd.sysusers), the units in /etc/systemd/system/,
# /etc/default/pybgpd (an existing one is kept), the `ip route` protocol name, and
# /etc/pybgpd (root:pybgpd 0750) for a file:// datastore and --secrets-dir. Install the
# package first (`pip install .`): the units find `bgpd` and `felix` by name in systemd's
# search path. Safe to run again. DESTDIR=DIR installs into DIR instead of / (packaging,
# tests): no systemctl then.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "scripts/install-units.sh: run as root" >&2
    exit 1
fi
if ! command -v systemd-sysusers >/dev/null; then
    echo "scripts/install-units.sh: systemd-sysusers not found (Debian package systemd)" >&2
    exit 1
fi

root="${DESTDIR:-}"
root="${root%/}"

install -D -m 0644 systemd/pybgpd.sysusers "$root/usr/lib/sysusers.d/pybgpd.conf"
# Creates the user and group if missing; leaves existing ones as they are. (The file named is
# read as given, --root only places the user databases.)
install -d -m 0755 "$root/etc"
systemd-sysusers ${root:+--root="$root"} "$root/usr/lib/sysusers.d/pybgpd.conf"
gid="$(awk -F: '$1 == "pybgpd" { print $3 }' "$root/etc/group")"
if [ -z "$gid" ]; then
    echo "scripts/install-units.sh: group pybgpd was not created in $root/etc/group" >&2
    exit 1
fi

install -D -m 0644 systemd/bgpd.service "$root/etc/systemd/system/bgpd.service"
install -D -m 0644 systemd/felix.service "$root/etc/systemd/system/felix.service"
if [ ! -e "$root/etc/default/pybgpd" ]; then
    install -D -m 0644 systemd/pybgpd.default "$root/etc/default/pybgpd"
fi
install -D -m 0644 config/rt_protos.d/pybgpd.conf "$root/etc/iproute2/rt_protos.d/pybgpd.conf"
install -d -m 0750 "$root/etc/pybgpd"
chown "0:$gid" "$root/etc/pybgpd"

if [ -z "$root" ]; then
    search="$(systemd-path search-binaries-default)"
    for exe in bgpd felix; do
        if ! PATH="$search" command -v "$exe" >/dev/null; then
            echo "warning: $exe is not in systemd's search path ($search); install the" \
                "package for the system, or add ExecSearchPath= in a drop-in" \
                "(systemctl edit ${exe}.service)" >&2
        fi
    done
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
fi
echo "installed; next: edit $root/etc/default/pybgpd, then systemctl enable --now bgpd felix"
