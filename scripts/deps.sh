#!/usr/bin/env bash
# Installs everything `make demo`, `make test`, `make bench` and `make lint` use on a
# Debian/Ubuntu host, and starts libvirt's daemons when no init system runs them.
# Idempotent, and quick when all is there. Needs root; run as an ordinary user, it checks
# first and asks for sudo only when something is missing.
#
# Only this one-time setup needs root: kmodvm itself then runs as an ordinary user in the
# libvirt and kvm groups, building images in a user namespace. Run through sudo, the script
# also gives $SUDO_USER the subordinate uids and gids that namespace maps (/etc/subuid,
# /etc/subgid) when it has none.
#
#   bash scripts/deps.sh           install what is missing, start libvirt
#   bash scripts/deps.sh --check   only say what is missing (exit 1 if anything is); change nothing
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
export PATH=/usr/local/go/bin:${HOME:-/root}/go/bin:$PATH
check=false
[ "${1:-}" = --check ] && check=true
# As an ordinary user: nothing to do when all is there, else ask for root once.
if ! $check && [ "$(id -u)" != 0 ]; then
	if bash "$0" --check >/dev/null 2>&1; then
		exit 0
	fi
	echo "==> the one-time host setup needs root: running it with sudo" >&2
	exec sudo bash "$0" "$@"
fi

# Debian packages, each with the commands that need it (Makefile, scripts/, the e2e tests).
pkgs=(
	libvirt-daemon-system # libvirtd, virtlogd
	libvirt-clients       # virsh (fault tests)
	qemu-system-x86       # qemu-system-x86_64 (guests, KVM probe, bench's bare boot)
	qemu-utils            # qemu-img
	mmdebstrap            # the toolchain root
	debian-archive-keyring
	ca-certificates
	bubblewrap   # bwrap: builds in the toolchain root
	e2fsprogs    # mkfs.ext4, debugfs (image e2e test)
	uidmap       # newuidmap, newgidmap: unprivileged image builds
	openssh-client # ssh, scp (bench, e2e tests)
	iproute2       # ss -K: the fault tests cut SSH
	procps         # pgrep, pkill, ps: the tests look for stragglers
	mount          # mount, umount (build fault tests)
	tar xz-utils   # kernel source and tarballs
	make           # make itself, and bench's builds
	bc             # bench's arithmetic
	rsync          # bench: kmodvm sync against rsync over ssh
	shellcheck     # make lint
	git            # go's VCS stamping and module fetches
)
installed=" $(dpkg-query -W -f='${db:Status-Status} ${Package}\n' "${pkgs[@]}" 2>/dev/null | awk '$1 == "installed" {printf "%s ", $2}' || true)"
missing=()
for p in "${pkgs[@]}"; do
	[[ $installed == *" $p "* ]] || missing+=("$p")
done
todo=()
if ((${#missing[@]})); then
	todo+=("Debian packages: ${missing[*]}")
	if ! $check; then
		echo "==> installing: ${missing[*]}"
		# A third-party source that is unreachable must not stop the install.
		apt-get update -q || true
		apt-get install -y -q --no-install-recommends "${missing[@]}"
	fi
fi

# OpenSSH's sshd, for the remote-host e2e tests: they start it on 127.0.0.1 with a config of
# their own. The package's own ssh service would listen on every address, so it is installed
# with services held back (policy-rc.d) and, when this script installed it, left disabled.
if ! dpkg-query -W -f='${db:Status-Status}\n' openssh-server 2>/dev/null | grep -qx installed; then
	todo+=("Debian package: openssh-server (for the e2e tests; its ssh service left off)")
	if ! $check; then
		echo "==> installing openssh-server (for the remote-host e2e tests; its ssh service is left off)"
		held=
		if [ ! -e /usr/sbin/policy-rc.d ]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			held=/usr/sbin/policy-rc.d
			trap 'rm -f "$held"' EXIT
		fi
		((${#missing[@]})) || apt-get update -q || true
		apt-get install -y -q --no-install-recommends openssh-server
		if [ -n "$held" ]; then
			rm -f "$held"
			trap - EXIT
		fi
		if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
			systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
		else
			update-rc.d ssh disable >/dev/null 2>&1 || true
		fi
	fi
fi

# Go: the version go.mod names, at least (Debian's golang is older). Installing a Go toolchain
# is left to the user: say which version is needed and where it comes from.
want=$(awk '$1 == "go" {print $2; exit}' go.mod)
have=$(go env GOVERSION 2>/dev/null | sed 's/^go//') || have=
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]; then
	todo+=("Go >= $want (have: ${have:-none})")
	if ! $check; then
		echo "kmodvm needs Go >= $want (found: ${have:-none}); hint: install it from https://go.dev/dl into /usr/local/go (this script looks there), then run scripts/deps.sh again" >&2
		exit 1
	fi
fi

# staticcheck for make lint, at the version the project pins.
# In /usr/local/bin, where every user's make lint finds it (not root's ~/go/bin).
if [ ! -x /usr/local/bin/staticcheck ]; then
	todo+=("staticcheck")
	if ! $check; then
		echo "==> installing staticcheck"
		GOBIN=/usr/local/bin go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	fi
fi

# Subordinate ids for the user who ran sudo: `unshare --map-auto` maps 65536 of them.
# has_subids FILE USER UID: FILE gives USER (by name or uid) a block of at least 65536.
has_subids() {
	[ -r "$1" ] && awk -F: -v u="$2" -v id="$3" '($1 == u || $1 == id) && $3 >= 65536 {f = 1} END {exit !f}' "$1"
}
# free_subids: the first range of 65536 ids from 100000 on, in steps of 65536, that overlaps
# no block in /etc/subuid or /etc/subgid (the range `kmodvm doctor` proposes too).
free_subids() {
	cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'BEGIN { n = 0 }
		NF == 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ && $3 > 0 { s[n] = $2; e[n] = $2 + $3; n++ }
		END {
			for (start = 100000; ; start += 65536) {
				free = 1
				for (i = 0; i < n; i++) if (s[i] < start + 65536 && start < e[i]) { free = 0; break }
				if (free) { printf "%d-%d\n", start, start + 65535; exit }
			}
		}'
}
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && uid=$(id -u "$SUDO_USER" 2>/dev/null); then
	add=()
	has_subids /etc/subuid "$SUDO_USER" "$uid" || add+=(--add-subuids)
	has_subids /etc/subgid "$SUDO_USER" "$uid" || add+=(--add-subgids)
	if ((${#add[@]})); then
		todo+=("subordinate ids for $SUDO_USER (${add[*]})")
		if ! $check; then
			range=$(free_subids)
			args=()
			for a in "${add[@]}"; do args+=("$a" "$range"); done
			echo "==> giving $SUDO_USER subordinate ids $range (${add[*]})"
			usermod "${args[@]}" "$SUDO_USER"
		fi
	fi
fi

# The user who ran sudo joins the groups a workstation's libvirt and KVM let in.
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ] && id "$SUDO_USER" >/dev/null 2>&1; then
	for g in libvirt kvm; do
		if getent group "$g" >/dev/null && ! id -nG "$SUDO_USER" | tr ' ' '\n' | grep -qx "$g"; then
			todo+=("$SUDO_USER in group $g")
			if ! $check; then
				usermod -a -G "$g" "$SUDO_USER"
				echo "==> added $SUDO_USER to group $g: log out and in (or run \`newgrp $g\`) for it to count"
			fi
		fi
	done
fi

if $check; then
	if ((${#todo[@]})); then
		printf 'missing: %s\n' "${todo[@]}"
		exit 1
	fi
	echo "everything is installed"
	exit 0
fi

# Without udev, /dev/kvm stays root-only; libvirt then re-probes QEMU on every call
# (~30-50 s per define/start). Give it Debian's usual group and mode.
if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G /dev/kvm)" != kvm ]; then
	chgrp kvm /dev/kvm && chmod 660 /dev/kvm
fi
# Never bring up libvirt's default NAT network: kmodvm uses user-mode networking only.
rm -f /etc/libvirt/qemu/networks/autostart/default.xml
if ! pidof systemd >/dev/null 2>&1 || [ "$(cat /proc/1/comm 2>/dev/null)" != systemd ]; then
	# -u 0: users' session daemons have the same names.
	pgrep -u 0 -x virtlogd >/dev/null || { echo "==> starting virtlogd"; virtlogd -d; }
	pgrep -u 0 -x libvirtd >/dev/null || { echo "==> starting libvirtd"; libvirtd -d; }
else
	systemctl start virtlogd libvirtd
fi
for _ in $(seq 1 50); do
	[ -S /run/libvirt/libvirt-sock ] && break
	sleep 0.2
done
[ -S /run/libvirt/libvirt-sock ] || { echo "libvirtd did not come up" >&2; exit 1; }
