package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/images/userns"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// host is what doctor asks the machine; realHost is the machine, tests use fakes so every
// finding can be checked without root.
type host struct {
	getuid      func() int
	username    func() string
	getgroups   func() ([]int, error)                  // this session's groups
	lookupGroup func(name string) (gid int, err error) // through NSS
	stat        func(path string) (fs.FileInfo, error)
	readFile    func(path string) ([]byte, error)
	lookPath    func(tool string) (string, error)          // hosttool.Find
	statfs      func(path string) (free uint64, err error) // bytes available to the user
	dial        func(sock string) error                    // connect to a unix socket
	userns      func() []userns.Problem
}

func realHost() host {
	return host{
		getuid: os.Getuid,
		username: func() string {
			if u, err := user.Current(); err == nil {
				return u.Username
			}
			return strconv.Itoa(os.Getuid())
		},
		getgroups: os.Getgroups,
		lookupGroup: func(name string) (int, error) {
			g, err := user.LookupGroup(name)
			if err != nil {
				return 0, err
			}
			return strconv.Atoi(g.Gid)
		},
		stat:     os.Stat,
		readFile: os.ReadFile,
		lookPath: hosttool.Find,
		statfs: func(path string) (uint64, error) {
			var st syscall.Statfs_t
			if err := syscall.Statfs(path, &st); err != nil {
				return 0, err
			}
			return st.Bavail * uint64(st.Bsize), nil
		},
		dial: func(sock string) error {
			c, err := net.DialTimeout("unix", sock, 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		},
		userns: func() []userns.Problem { return userns.Check(userns.DefaultEnv()) },
	}
}

const gib = 1 << 30

// startDaemonsFix starts the system libvirt daemons.
const startDaemonsFix = "start the daemons: `libvirtd -d && virtlogd -d` (or `systemctl start libvirtd virtlogd`)"

// hostChecks are doctor's findings about this machine for uri and paths, in output order.
func hostChecks(h host, uri string, paths config.Paths) []check {
	var out []check
	root := h.getuid() == 0
	if _, err := h.stat("/run/libvirt/virtlogd-sock"); err != nil && uri == vm.URISystem {
		out = append(out, check{"virtlogd", "fail", "virtlogd is not running: the first domain start would fail", "start it: `virtlogd -d`"})
	} else {
		out = append(out, check{"virtlogd", "ok", "running", ""})
	}
	out = append(out, socketCheck(h, uri))
	out = append(out, groupsCheck(h, uri))
	for _, t := range []struct {
		bin, why string
		userOnly bool // needed by ordinary users only
	}{
		{"qemu-system-x86_64", "runs the guest", false},
		{"qemu-img", "makes the disk base and overlays", false},
		{"mmdebstrap", "builds the guest image from Debian packages", false},
		{"bwrap", "runs builds inside the toolchain root", false},
		{"mkfs.ext4", "packs the guest root filesystem", false},
		{"debugfs", "reads the guest root filesystem", false},
		{"newuidmap", "maps subordinate uids for image builds without root", true},
		{"newgidmap", "maps subordinate gids for image builds without root", true},
	} {
		p, err := h.lookPath(t.bin)
		switch {
		case err == nil:
			out = append(out, check{t.bin, "ok", p, ""})
		case t.userOnly && root:
			out = append(out, check{t.bin, "ok", "not installed; not needed as root", ""})
		default:
			out = append(out, check{t.bin, "fail", "not found (" + t.why + ")", "sudo apt-get install " + hosttool.Package(t.bin)})
		}
	}
	if p, err := h.lookPath("passt"); err != nil {
		out = append(out, check{"passt", "ok", "not installed; not needed: kmodvm uses QEMU user-mode networking bound to 127.0.0.1", ""})
	} else {
		out = append(out, check{"passt", "ok", p + " (not needed: kmodvm uses QEMU user-mode networking)", ""})
	}
	out = append(out, usernsChecks(h, root)...)
	out = append(out, cacheCheck(h, paths), tmpCheck(h), diskCheck(h, paths.Cache))
	return out
}

func usernsChecks(h host, root bool) []check {
	if root {
		return []check{{"userns", "ok", "not needed as root", ""}}
	}
	problems := h.userns()
	if len(problems) == 0 {
		return []check{{"userns", "ok", "images build without root in a user namespace (unshare --map-root-user --map-auto)", ""}}
	}
	var out []check
	for _, p := range problems {
		out = append(out, check{"userns", "fail", p.What, p.Fix})
	}
	return out
}

// socketCheck: can this user open libvirt's socket for uri?
func socketCheck(h host, uri string) check {
	sock, local, err := vm.SocketPath(uri)
	switch {
	case err != nil:
		return check{"socket", "fail", firstLine(err.Error()), "use " + vm.URISystem + " or " + vm.URISession}
	case !local:
		return check{"socket", "ok", "remote URI: nothing to open here", ""}
	}
	err = h.dial(sock)
	if uri != vm.URISystem && strings.HasPrefix(uri, vm.URISession) {
		if err != nil {
			return check{"socket", "ok", "the per-user libvirtd is not running (" + sock + "); kmodvm starts it on demand", ""}
		}
		return check{"socket", "ok", "the per-user libvirtd runs (" + sock + ")", ""}
	}
	switch {
	case err == nil:
		return check{"socket", "ok", sock + " opens read-write", ""}
	case errors.Is(err, fs.ErrPermission):
		return check{"socket", "fail", "permission denied on " + sock, fmt.Sprintf("sudo usermod -aG libvirt %s, then log out and in; or use %s", h.username(), vm.URISession)}
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return check{"socket", "fail", "nothing listens on " + sock, startDaemonsFix}
	}
	return check{"socket", "fail", fmt.Sprintf("cannot open %s: %v", sock, err), ""}
}

// groupsCheck: is an ordinary user in the groups that open libvirt's system socket and
// /dev/kvm, in this session and not only in /etc/group?
func groupsCheck(h host, uri string) check {
	if h.getuid() == 0 {
		return check{"groups", "ok", "not needed as root", ""}
	}
	user := h.username()
	session, err := h.getgroups()
	if err != nil {
		return check{"groups", "warn", "cannot list this session's groups: " + err.Error(), ""}
	}
	etc := parseGroupFile(h.readFile)
	var details, fixes []string
	status := "ok"
	worse := func(s string) {
		if s == "fail" || status == "ok" {
			status = s
		}
	}
	member := func(name string, gid int, bad string) {
		switch {
		case slices.Contains(session, gid):
			details = append(details, "in "+name)
		case slices.Contains(etc.members[name], user):
			worse(bad)
			details = append(details, "in "+name+" in /etc/group but not in this session's groups")
			fixes = append(fixes, "log out and in, or run `newgrp "+name+"`")
		default:
			worse(bad)
			details = append(details, "not in "+name)
			fixes = append(fixes, fmt.Sprintf("sudo usermod -aG %s %s, then log out and in", name, user))
		}
	}
	if uri == vm.URISystem {
		if gid, err := h.lookupGroup("libvirt"); err != nil {
			worse("fail")
			details = append(details, "no libvirt group on this host")
			fixes = append(fixes, "sudo apt-get install libvirt-daemon-system")
		} else {
			member("libvirt", gid, "fail")
		}
	}
	if st, err := h.stat("/dev/kvm"); err == nil && st.Mode().Perm()&0o006 != 0o006 {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			gid := int(sys.Gid)
			name := etc.names[gid]
			if name == "" {
				name = "kvm"
			}
			if gid == 0 {
				worse("warn")
				details = append(details, "/dev/kvm belongs to root only")
				fixes = append(fixes, "sudo chgrp kvm /dev/kvm && sudo chmod 660 /dev/kvm (what udev does; `make deps` does it)")
			} else {
				member(name, gid, "warn")
			}
		}
	}
	if len(details) == 0 {
		return check{"groups", "ok", "no group needed for " + uri, ""}
	}
	return check{"groups", status, user + ": " + strings.Join(details, ", "), strings.Join(fixes, "; ")}
}

// groupFile is /etc/group: members by group name, names by gid.
type groupFile struct {
	members map[string][]string
	names   map[int]string
}

func parseGroupFile(readFile func(string) ([]byte, error)) groupFile {
	g := groupFile{members: map[string][]string{}, names: map[int]string{}}
	data, err := readFile("/etc/group")
	if err != nil {
		return g
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) != 4 {
			continue
		}
		if gid, err := strconv.Atoi(f[2]); err == nil {
			g.names[gid] = f[0]
		}
		if f[3] != "" {
			g.members[f[0]] = strings.Split(f[3], ",")
		}
	}
	return g
}

// cacheCheck: kmodvm's state and cache directories belong to the user and nobody else may
// write them (a key or a disk image there could be swapped).
func cacheCheck(h host, paths config.Paths) check {
	uid := h.getuid()
	var details, fixes []string
	status := "ok"
	for _, dir := range []string{paths.Cache, paths.State} {
		st, err := h.stat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			details = append(details, dir+" is created on first use")
			continue
		}
		if err != nil {
			status = "fail"
			details = append(details, fmt.Sprintf("cannot stat %s: %v", dir, err))
			continue
		}
		owner := -1
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			owner = int(sys.Uid)
		}
		switch {
		case owner != uid:
			status = "fail"
			details = append(details, fmt.Sprintf("%s belongs to uid %d, not to this user (uid %d)", dir, owner, uid))
			fixes = append(fixes, fmt.Sprintf("sudo chown -R %s: %s", h.username(), dir))
		case st.Mode().Perm()&0o022 != 0:
			if status == "ok" {
				status = "warn"
			}
			details = append(details, fmt.Sprintf("%s is %s: others may write it", dir, st.Mode().Perm()))
			fixes = append(fixes, "chmod go-w "+dir)
		default:
			details = append(details, dir+" is this user's")
		}
	}
	return check{"cache", status, strings.Join(details, "; "), strings.Join(fixes, "; ")}
}

// tmpCheck: mmdebstrap in unshare mode unpacks in TMPDIR as the namespace's users, so it
// must be world-writable (and sticky), with room for a root.
func tmpCheck(h host) check {
	const dir = "/var/tmp"
	st, err := h.stat(dir)
	if err != nil {
		return check{"tmp", "fail", fmt.Sprintf("%s: %v", dir, err), "sudo mkdir -p -m 1777 " + dir}
	}
	if m := st.Mode(); !m.IsDir() || m.Perm()&0o777 != 0o777 || m&fs.ModeSticky == 0 {
		return check{"tmp", "fail", fmt.Sprintf("%s is %s, not world-writable and sticky: image builds without root unpack there", dir, m), "sudo chmod 1777 " + dir}
	}
	free, err := h.statfs(dir)
	if err != nil {
		return check{"tmp", "warn", fmt.Sprintf("cannot see free space in %s: %v", dir, err), ""}
	}
	detail := fmt.Sprintf("%s is world-writable and sticky, %.1f GiB free", dir, float64(free)/gib)
	if free < 5*gib {
		return check{"tmp", "warn", detail + " (an image build needs about 5 GiB there)", "free space in " + dir}
	}
	return check{"tmp", "ok", detail, ""}
}

// diskCheck: room under the cache directory, or its nearest existing parent.
func diskCheck(h host, dir string) check {
	for d := dir; ; d = filepath.Dir(d) {
		if free, err := h.statfs(d); err == nil {
			gibs := float64(free) / gib
			detail := fmt.Sprintf("%.0f GiB free under %s", gibs, d)
			if gibs < 15 {
				return check{"disk", "warn", detail + " (an image, a kernel tree and its build need about 15 GiB)", "free space or set KMODVM_HOME to a bigger disk"}
			}
			return check{"disk", "ok", detail, ""}
		}
		if d == "/" || d == "." {
			return check{"disk", "warn", "cannot stat " + dir, ""}
		}
	}
}
