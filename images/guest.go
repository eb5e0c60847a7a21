package images

// Files kmodvm writes into the guest disk. Their text is golden-tested
// (testdata/guest/*.golden).

// GuestInit is the init the kernel command line names (init=/sbin/kmodvm-init). With the
// systemd init it execs systemd, so the command line is the same for both.
const GuestInit = "/sbin/kmodvm-init"

// GuestPoweroff stops the guest from inside (run over SSH): tiny kernels have no ACPI, so it
// syncs, remounts / read-only and reboots; the domain's on_reboot=destroy then stops it.
const GuestPoweroff = "/usr/local/sbin/kmodvm-poweroff"

// GuestNet configures the guest's network for QEMU's user-mode network.
const GuestNet = "/usr/local/sbin/kmodvm-net"

// Hostname is the guest's host name.
const Hostname = "kmodvm"

// InitMarkerSSHD is printed on the console by the tiny init right before it execs sshd.
const InitMarkerSSHD = "kmodvm-init: sshd starting"

const tinyInit = `#!/bin/sh
# kmodvm-init: PID 1 of a kmodvm guest (written by kmodvm; do not edit).
# Mounts the API filesystems, brings the network up and becomes sshd. If sshd dies the
# kernel panics (panic=-1 reboots, the host's on_reboot=destroy stops the domain).
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HOME=/root
LANG=C.UTF-8
export PATH HOME LANG

say() { echo "kmodvm-init: $*"; }
mounted() { grep -q "^[^ ]* $1 " /proc/mounts 2>/dev/null; }
mnt() { # mnt TYPE DIR OPTIONS
	mounted "$2" && return 0
	mkdir -p "$2"
	mount -t "$1" -o "$3" "$1" "$2" || say "warning: cannot mount $1 on $2"
}

say "starting"
mnt proc /proc nosuid,nodev,noexec
mnt sysfs /sys nosuid,nodev,noexec
mnt devtmpfs /dev nosuid,mode=0755
mnt devpts /dev/pts nosuid,noexec,gid=5,mode=0620,ptmxmode=0666
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || ln -s /proc/self/fd/2 /dev/stderr
mnt tmpfs /run nosuid,nodev,mode=0755
mnt tmpfs /tmp nosuid,nodev,mode=1777
mnt tmpfs /dev/shm nosuid,nodev,mode=1777
[ -d /sys/kernel/debug ] && mnt debugfs /sys/kernel/debug nosuid,nodev,noexec
[ -d /sys/kernel/tracing ] && mnt tracefs /sys/kernel/tracing nosuid,nodev,noexec

read -r host < /etc/hostname && echo "$host" > /proc/sys/kernel/hostname 2>/dev/null

/usr/local/sbin/kmodvm-net || say "warning: network setup failed"

mkdir -p /run/sshd
chmod 0755 /run/sshd
say "sshd starting"
exec /usr/sbin/sshd -D -e
`

const systemdInit = `#!/bin/sh
# kmodvm-init: hands over to systemd (written by kmodvm; do not edit).
exec /lib/systemd/systemd "$@"
`

const netScript = `#!/bin/sh
# kmodvm-net: static address on QEMU's user-mode network (written by kmodvm; do not edit).
# Uses the first interface backed by a device (eth0 with net.ifnames=0).
ip link set lo up
dev=
for d in /sys/class/net/*; do
	[ -e "$d/device" ] || continue
	dev=${d##*/}
	break
done
if [ -z "$dev" ]; then
	echo "kmodvm-net: no network interface found" >&2
	exit 1
fi
ip link set "$dev" up &&
	ip addr add 10.0.2.15/24 dev "$dev" &&
	ip route add default via 10.0.2.2 dev "$dev" || exit 1
echo "kmodvm-net: $dev up, 10.0.2.15/24 via 10.0.2.2"
`

const poweroffScript = `#!/bin/sh
# kmodvm-poweroff: stop the guest without ACPI (written by kmodvm; do not edit).
# The reboot ends the domain: it is defined with on_reboot=destroy.
sync
mount -o remount,ro / 2>/dev/null
echo b > /proc/sysrq-trigger 2>/dev/null
# No magic SysRq in this kernel: reboot through systemd, or end PID 1 (sshd under the tiny
# init), which panics the kernel; panic=-1 then reboots.
if [ -x /usr/sbin/reboot ] && [ -d /run/systemd/system ]; then
	/usr/sbin/reboot -ff
fi
kill -TERM 1
`

const sshdConfig = `# Written by kmodvm; do not edit.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# Every forwarded connection comes from the same slirp address: penalties lock everyone out.
PerSourcePenalties no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
# kmodvm multiplexes sessions (commands, log tails, SFTP) on one connection.
MaxSessions 64
PrintMotd no
# No PAM: its session stack (motd scripts, limits, env, keyring, loginuid) execs programs on
# every login, which under TCG made each connection take 1.6 s instead of 0.65 s; key login
# as root needs none of it.
UsePAM no
`

// netUnit runs kmodvm-net under systemd (the tiny init runs it directly).
const netUnit = `# Written by kmodvm; do not edit.
[Unit]
Description=kmodvm guest network (QEMU user-mode)
Before=network.target ssh.service
Wants=network.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/kmodvm-net

[Install]
WantedBy=multi-user.target
`

// guestFile is a file BuildDisk writes into the stage.
type guestFile struct {
	Path string
	Mode uint32
	Data string
}

// guestFiles are the files for init (InitTiny or InitSystemd), besides keys.
func guestFiles(init string) []guestFile {
	files := []guestFile{
		{Path: "/etc/hostname", Mode: 0o644, Data: Hostname + "\n"},
		{Path: "/etc/ssh/sshd_config.d/kmodvm.conf", Mode: 0o644, Data: sshdConfig},
		{Path: GuestNet, Mode: 0o755, Data: netScript},
		{Path: GuestPoweroff, Mode: 0o755, Data: poweroffScript},
	}
	if init == InitSystemd {
		return append(files,
			guestFile{Path: GuestInit, Mode: 0o755, Data: systemdInit},
			guestFile{Path: "/etc/systemd/system/kmodvm-net.service", Mode: 0o644, Data: netUnit},
		)
	}
	return append(files, guestFile{Path: GuestInit, Mode: 0o755, Data: tinyInit})
}

// guestLinks are the symlinks for init: systemd units to enable.
func guestLinks(init string) map[string]string {
	if init != InitSystemd {
		return nil
	}
	return map[string]string{
		"/etc/systemd/system/multi-user.target.wants/kmodvm-net.service": "/etc/systemd/system/kmodvm-net.service",
		"/etc/systemd/system/multi-user.target.wants/ssh.service":        "/lib/systemd/system/ssh.service",
		// Host keys come from kmodvm (pinned by the host): no first-boot generation.
		"/etc/systemd/system/sshd-keygen.service": "/dev/null",
	}
}
