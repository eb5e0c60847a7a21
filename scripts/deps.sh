#!/usr/bin/env bash
# Installs what kmodvm needs on a Debian/Ubuntu host and starts libvirt's daemons when no
# init system runs them. Idempotent; needs root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
pkgs=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils mmdebstrap
      bubblewrap e2fsprogs debian-archive-keyring ca-certificates openssh-client
      iproute2 procps) # ss -K, pgrep/pkill/ps: the fault tests cut SSH and look for stragglers
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "==> installing: ${missing[*]}"
	# A third-party source that is unreachable must not stop the install.
	apt-get update -q || true
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Without udev, /dev/kvm stays root-only; libvirt then re-probes QEMU on every call
# (~30-50 s per define/start). Give it Debian's usual group and mode.
if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" != kvm ]; then
	chgrp kvm /dev/kvm && chmod 660 /dev/kvm
fi
# Never bring up libvirt's default NAT network: kmodvm uses user-mode networking only.
rm -f /etc/libvirt/qemu/networks/autostart/default.xml
if ! pidof systemd >/dev/null 2>&1 || [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ]; then
	pgrep -x virtlogd >/dev/null || { echo "==> starting virtlogd"; virtlogd -d; }
	pgrep -x libvirtd >/dev/null || { echo "==> starting libvirtd"; libvirtd -d; }
else
	systemctl start virtlogd libvirtd
fi
for _ in $(seq 1 50); do
	[ -S /run/libvirt/libvirt-sock ] && break
	sleep 0.2
done
[ -S /run/libvirt/libvirt-sock ] || { echo "libvirtd did not come up" >&2; exit 1; }
