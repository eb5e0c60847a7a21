#!/usr/bin/env bash
# Makes an ordinary user for the unprivileged end-to-end test, as a workstation has one:
# in the libvirt and kvm groups, with subordinate ids for user namespaces, and libvirtd
# letting the libvirt group in (what polkit grants a workstation's users; these machines
# have no polkit, so the socket's group and mode do it). Idempotent; needs root. libvirtd is
# restarted only when its configuration changed.
#
#   bash scripts/ci-user.sh [USER]     (default: kmodvm-ci)
set -euo pipefail
user=${1:-kmodvm-ci}
home=/var/lib/$user # persists across CI runs: the user's image and kernel caches stay warm
[ "$(id -u)" = 0 ] || { echo "ci-user.sh makes a user and configures libvirtd: run it as root" >&2; exit 1; }

if ! id "$user" >/dev/null 2>&1; then
	echo "==> creating user $user"
	useradd --create-home --home-dir "$home" --shell /bin/bash --groups libvirt,kvm "$user"
fi
usermod -a -G libvirt,kvm "$user"

# Subordinate ids: 65536 of them, from a range no other entry uses.
for f in /etc/subuid /etc/subgid; do
	touch "$f"
	if ! grep -q "^$user:" "$f"; then
		start=$(awk -F: '{ e = $2 + $3; if (e > m) m = e } END { print (m > 100000 ? m : 100000) }' "$f")
		echo "==> $f: $user gets $start-$((start + 65535))"
		echo "$user:$start:65536" >>"$f"
	fi
done

# libvirtd: the libvirt group may use the read-write socket.
conf=/etc/libvirt/libvirtd.conf
begin='# kmodvm-ci: begin'
end='# kmodvm-ci: end'
block=$(printf '%s\n%s\n%s\n%s\n%s' "$begin" 'unix_sock_group = "libvirt"' 'unix_sock_rw_perms = "0770"' 'auth_unix_rw = "none"' "$end")
current=$(sed -n "/^$begin\$/,/^$end\$/p" "$conf")
if [ "$current" != "$block" ]; then
	echo "==> $conf: the libvirt group may use libvirt's socket"
	sed -i "/^$begin\$/,/^$end\$/d" "$conf"
	printf '%s\n' "$block" >>"$conf"
	if [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
		systemctl restart libvirtd
	else
		# The system daemon only: users' session daemons are libvirtd too.
		if pid=$(pgrep -u 0 -x libvirtd); then
			kill "$pid"
			for _ in $(seq 1 100); do
				pgrep -u 0 -x libvirtd >/dev/null || break
				sleep 0.1
			done
		fi
		rm -f /run/libvirt/libvirt-sock
		libvirtd -d
	fi
	for _ in $(seq 1 100); do
		[ -S /run/libvirt/libvirt-sock ] && break
		sleep 0.2
	done
fi
stat -c '%G %a' /run/libvirt/libvirt-sock | grep -qx 'libvirt 770' || {
	echo "libvirt's socket is $(stat -c '%U:%G %a' /run/libvirt/libvirt-sock), want group libvirt, mode 770" >&2
	exit 1
}
echo "user $user is ready: $(id "$user")"
