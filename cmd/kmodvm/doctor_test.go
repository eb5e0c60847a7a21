package main

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/images/userns"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// fakeFile is a stat result with an owner.
type fakeFile struct {
	mode     fs.FileMode
	uid, gid uint32
}

func (f fakeFile) Name() string       { return "f" }
func (f fakeFile) Size() int64        { return 0 }
func (f fakeFile) Mode() fs.FileMode  { return f.mode }
func (f fakeFile) ModTime() time.Time { return time.Time{} }
func (f fakeFile) IsDir() bool        { return f.mode.IsDir() }
func (f fakeFile) Sys() any           { return &syscall.Stat_t{Uid: f.uid, Gid: f.gid} }

var testPaths = config.Paths{Cache: "/home/alice/.cache/kmodvm", State: "/home/alice/.local/state/kmodvm"}

// fakeHost is alice (uid 1000) on a host where all is well: in libvirt (gid 120) and kvm
// (gid 108) in this session, every tool installed, /dev/kvm 0660 root:kvm.
func fakeHost() (host, map[string]fs.FileInfo, map[string]string) {
	files := map[string]fs.FileInfo{
		"/run/libvirt/virtlogd-sock": fakeFile{mode: fs.ModeSocket | 0o600},
		"/dev/kvm":                   fakeFile{mode: fs.ModeCharDevice | fs.ModeDevice | 0o660, gid: 108},
		testPaths.Cache:              fakeFile{mode: fs.ModeDir | 0o755, uid: 1000},
		testPaths.State:              fakeFile{mode: fs.ModeDir | 0o700, uid: 1000},
		"/var/tmp":                   fakeFile{mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
	text := map[string]string{
		"/etc/group": "root:x:0:\nkvm:x:108:alice\nlibvirt:x:120:alice,bob\nbroken\n",
	}
	h := host{
		getuid:    func() int { return 1000 },
		username:  func() string { return "alice" },
		getgroups: func() ([]int, error) { return []int{1000, 108, 120}, nil },
		lookupGroup: func(name string) (int, error) {
			if name == "libvirt" {
				return 120, nil
			}
			return 0, errors.New("unknown group " + name)
		},
		stat: func(p string) (fs.FileInfo, error) {
			if fi, ok := files[p]; ok {
				return fi, nil
			}
			return nil, fs.ErrNotExist
		},
		readFile: func(p string) ([]byte, error) {
			if s, ok := text[p]; ok {
				return []byte(s), nil
			}
			return nil, fs.ErrNotExist
		},
		lookPath: func(tool string) (string, error) {
			if tool == "passt" {
				return "", hosttool.NotFound(tool)
			}
			return "/usr/sbin/" + tool, nil
		},
		statfs: func(string) (uint64, error) { return 100 * gib, nil },
		dial:   func(string) error { return nil },
		userns: func() []userns.Problem { return nil },
	}
	return h, files, text
}

func findCheck(checks []check, name string) []check {
	var out []check
	for _, c := range checks {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func TestHostChecks(t *testing.T) {
	tests := []struct {
		name   string
		uri    string
		change func(h *host, files map[string]fs.FileInfo, text map[string]string)
		check  string
		want   []check // Detail is matched as a substring
	}{
		// tools
		{name: "tool shows its path", check: "mkfs.ext4",
			want: []check{{"mkfs.ext4", "ok", "/usr/sbin/mkfs.ext4", ""}}},
		{name: "tool missing", check: "debugfs", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.lookPath = func(tool string) (string, error) { return "", hosttool.NotFound(tool) }
		}, want: []check{{"debugfs", "fail", "not found (reads the guest root filesystem)", "sudo apt-get install e2fsprogs"}}},
		{name: "newuidmap missing", check: "newuidmap", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.lookPath = func(tool string) (string, error) { return "", hosttool.NotFound(tool) }
		}, want: []check{{"newuidmap", "fail", "not found", "sudo apt-get install uidmap"}}},
		{name: "newgidmap missing as root", check: "newgidmap", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.getuid = func() int { return 0 }
			h.lookPath = func(tool string) (string, error) { return "", hosttool.NotFound(tool) }
		}, want: []check{{"newgidmap", "ok", "not needed as root", ""}}},
		{name: "passt absent is fine", check: "passt",
			want: []check{{"passt", "ok", "not installed; not needed", ""}}},
		{name: "passt present", check: "passt", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.lookPath = func(tool string) (string, error) { return "/usr/bin/" + tool, nil }
		}, want: []check{{"passt", "ok", "/usr/bin/passt (not needed", ""}}},

		// virtlogd
		{name: "virtlogd running", check: "virtlogd", want: []check{{"virtlogd", "ok", "running", ""}}},
		{name: "virtlogd missing", check: "virtlogd", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			delete(files, "/run/libvirt/virtlogd-sock")
		}, want: []check{{"virtlogd", "fail", "virtlogd is not running", "start it: `virtlogd -d`"}}},

		// userns
		{name: "userns works", check: "userns", want: []check{{"userns", "ok", "images build without root", ""}}},
		{name: "userns as root", check: "userns", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.getuid = func() int { return 0 }
			h.userns = func() []userns.Problem { panic("root needs no namespace check") }
		}, want: []check{{"userns", "ok", "not needed as root", ""}}},
		{name: "userns problems, one check each", check: "userns", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.userns = func() []userns.Problem {
				return []userns.Problem{{What: "newuidmap is not installed", Fix: "sudo apt-get install uidmap"}, {What: "/etc/subuid has no block for alice", Fix: "sudo usermod --add-subuids 100000-165535 alice"}}
			}
		}, want: []check{
			{"userns", "fail", "newuidmap is not installed", "sudo apt-get install uidmap"},
			{"userns", "fail", "/etc/subuid has no block for alice", "sudo usermod --add-subuids 100000-165535 alice"},
		}},

		// socket
		{name: "system socket opens", check: "socket", want: []check{{"socket", "ok", "/var/run/libvirt/libvirt-sock opens read-write", ""}}},
		{name: "system socket denied", check: "socket", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.dial = func(string) error { return fmt.Errorf("dial: %w", syscall.EACCES) }
		}, want: []check{{"socket", "fail", "permission denied on /var/run/libvirt/libvirt-sock", "sudo usermod -aG libvirt alice, then log out and in; or use qemu:///session"}}},
		{name: "system daemon down", check: "socket", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.dial = func(string) error { return fmt.Errorf("dial: %w", syscall.ENOENT) }
		}, want: []check{{"socket", "fail", "nothing listens on /var/run/libvirt/libvirt-sock", "start the daemons: `libvirtd -d && virtlogd -d` (or `systemctl start libvirtd virtlogd`)"}}},
		{name: "system socket refused", check: "socket", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.dial = func(string) error { return fmt.Errorf("dial: %w", syscall.ECONNREFUSED) }
		}, want: []check{{"socket", "fail", "nothing listens on", "start the daemons: `libvirtd -d && virtlogd -d` (or `systemctl start libvirtd virtlogd`)"}}},
		{name: "system socket odd error", check: "socket", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.dial = func(string) error { return errors.New("i/o timeout") }
		}, want: []check{{"socket", "fail", "cannot open /var/run/libvirt/libvirt-sock: i/o timeout", ""}}},
		{name: "session daemon runs", uri: vm.URISession, check: "socket",
			want: []check{{"socket", "ok", "the per-user libvirtd runs (/run/user/1000/libvirt/libvirt-sock)", ""}}},
		{name: "session daemon not running", uri: vm.URISession, check: "socket", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.dial = func(string) error { return fs.ErrNotExist }
		}, want: []check{{"socket", "ok", "the per-user libvirtd is not running (/run/user/1000/libvirt/libvirt-sock); kmodvm starts it on demand", ""}}},
		{name: "remote URI", uri: "qemu+ssh://root@host/system", check: "socket",
			want: []check{{"socket", "ok", "remote URI", ""}}},
		{name: "bad URI", uri: "qemu:///embed", check: "socket",
			want: []check{{"socket", "fail", "unsupported URI", "use qemu:///system or qemu:///session"}}},

		// groups
		{name: "in both groups", check: "groups", want: []check{{"groups", "ok", "alice: in libvirt, in kvm", ""}}},
		{name: "groups as root", check: "groups", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.getuid = func() int { return 0 }
		}, want: []check{{"groups", "ok", "not needed as root", ""}}},
		{name: "not in libvirt", check: "groups", change: func(h *host, _ map[string]fs.FileInfo, text map[string]string) {
			h.getgroups = func() ([]int, error) { return []int{1000, 108}, nil }
			text["/etc/group"] = "kvm:x:108:alice\nlibvirt:x:120:bob\n"
		}, want: []check{{"groups", "fail", "alice: not in libvirt, in kvm", "sudo usermod -aG libvirt alice, then log out and in"}}},
		{name: "libvirt only in /etc/group", check: "groups", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.getgroups = func() ([]int, error) { return []int{1000, 108}, nil }
		}, want: []check{{"groups", "fail", "alice: in libvirt in /etc/group but not in this session's groups, in kvm", "log out and in, or run `newgrp libvirt`"}}},
		{name: "no libvirt group", check: "groups", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.lookupGroup = func(name string) (int, error) { return 0, errors.New("unknown group") }
		}, want: []check{{"groups", "fail", "no libvirt group on this host", "sudo apt-get install libvirt-daemon-system"}}},
		{name: "libvirt group not needed for session", uri: vm.URISession, check: "groups", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.lookupGroup = func(name string) (int, error) { panic("session needs no libvirt group") }
		}, want: []check{{"groups", "ok", "alice: in kvm", ""}}},
		{name: "not in kvm", uri: vm.URISession, check: "groups", change: func(h *host, _ map[string]fs.FileInfo, text map[string]string) {
			h.getgroups = func() ([]int, error) { return []int{1000}, nil }
			text["/etc/group"] = "kvm:x:108:\n"
		}, want: []check{{"groups", "warn", "alice: not in kvm", "sudo usermod -aG kvm alice, then log out and in"}}},
		{name: "kvm only in /etc/group, libvirt missing", check: "groups", change: func(h *host, _ map[string]fs.FileInfo, text map[string]string) {
			h.getgroups = func() ([]int, error) { return []int{1000}, nil }
			text["/etc/group"] = "kvm:x:108:alice\nlibvirt:x:120:\n"
		}, want: []check{{"groups", "fail", "alice: not in libvirt, in kvm in /etc/group but not in this session's groups", "sudo usermod -aG libvirt alice, then log out and in; log out and in, or run `newgrp kvm`"}}},
		{name: "kvm device of another group name", uri: vm.URISession, check: "groups", change: func(h *host, files map[string]fs.FileInfo, text map[string]string) {
			files["/dev/kvm"] = fakeFile{mode: fs.ModeDevice | 0o660, gid: 36}
			text["/etc/group"] = "qemu:x:36:\n"
		}, want: []check{{"groups", "warn", "alice: not in qemu", "sudo usermod -aG qemu alice, then log out and in"}}},
		{name: "kvm device root only", uri: vm.URISession, check: "groups", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			files["/dev/kvm"] = fakeFile{mode: fs.ModeDevice | 0o600}
		}, want: []check{{"groups", "warn", "/dev/kvm belongs to root only", "sudo chgrp kvm /dev/kvm && sudo chmod 660 /dev/kvm (what udev does; `make deps` does it)"}}},
		{name: "kvm device world-accessible", uri: vm.URISession, check: "groups", change: func(h *host, files map[string]fs.FileInfo, _ map[string]string) {
			h.getgroups = func() ([]int, error) { return []int{1000}, nil }
			files["/dev/kvm"] = fakeFile{mode: fs.ModeDevice | 0o666, gid: 108}
		}, want: []check{{"groups", "ok", "no group needed for qemu:///session", ""}}},
		{name: "no kvm device", uri: vm.URISession, check: "groups", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			delete(files, "/dev/kvm")
		}, want: []check{{"groups", "ok", "no group needed", ""}}},
		{name: "getgroups fails", check: "groups", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.getgroups = func() ([]int, error) { return nil, errors.New("EPERM") }
		}, want: []check{{"groups", "warn", "cannot list this session's groups: EPERM", ""}}},

		// cache
		{name: "cache ours", check: "cache", want: []check{{"cache", "ok", testPaths.Cache + " is this user's; " + testPaths.State + " is this user's", ""}}},
		{name: "cache not there yet", check: "cache", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			delete(files, testPaths.Cache)
			delete(files, testPaths.State)
		}, want: []check{{"cache", "ok", testPaths.Cache + " is created on first use", ""}}},
		{name: "cache group-writable", check: "cache", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			files[testPaths.Cache] = fakeFile{mode: fs.ModeDir | 0o775, uid: 1000}
		}, want: []check{{"cache", "warn", testPaths.Cache + " is -rwxrwxr-x: others may write it", "chmod go-w " + testPaths.Cache}}},
		{name: "state root's", check: "cache", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			files[testPaths.Cache] = fakeFile{mode: fs.ModeDir | 0o777, uid: 1000}
			files[testPaths.State] = fakeFile{mode: fs.ModeDir | 0o700, uid: 0}
		}, want: []check{{"cache", "fail", testPaths.State + " belongs to uid 0, not to this user (uid 1000)", "chmod go-w " + testPaths.Cache + "; sudo chown -R alice: " + testPaths.State}}},
		{name: "cache unreadable", check: "cache", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.stat = func(string) (fs.FileInfo, error) { return nil, fs.ErrPermission }
		}, want: []check{{"cache", "fail", "cannot stat " + testPaths.Cache, ""}}},

		// tmp
		{name: "tmp fine", check: "tmp", want: []check{{"tmp", "ok", "/var/tmp is world-writable and sticky, 100.0 GiB free", ""}}},
		{name: "tmp missing", check: "tmp", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			delete(files, "/var/tmp")
		}, want: []check{{"tmp", "fail", "/var/tmp: file does not exist", "sudo mkdir -p -m 1777 /var/tmp"}}},
		{name: "tmp not sticky", check: "tmp", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			files["/var/tmp"] = fakeFile{mode: fs.ModeDir | 0o777}
		}, want: []check{{"tmp", "fail", "not world-writable and sticky", "sudo chmod 1777 /var/tmp"}}},
		{name: "tmp not world-writable", check: "tmp", change: func(_ *host, files map[string]fs.FileInfo, _ map[string]string) {
			files["/var/tmp"] = fakeFile{mode: fs.ModeDir | fs.ModeSticky | 0o755}
		}, want: []check{{"tmp", "fail", "/var/tmp is dtrwxr-xr-x", "sudo chmod 1777 /var/tmp"}}},
		{name: "tmp small", check: "tmp", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.statfs = func(string) (uint64, error) { return 3 * gib, nil }
		}, want: []check{{"tmp", "warn", "3.0 GiB free (an image build needs about 5 GiB there)", "free space in /var/tmp"}}},
		{name: "tmp statfs fails", check: "tmp", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.statfs = func(string) (uint64, error) { return 0, errors.New("EIO") }
		}, want: []check{{"tmp", "warn", "cannot see free space in /var/tmp: EIO", ""}}},

		// disk
		{name: "disk fine", check: "disk", want: []check{{"disk", "ok", "100 GiB free under " + testPaths.Cache, ""}}},
		{name: "disk small, cache not there yet", check: "disk", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.statfs = func(p string) (uint64, error) {
				if p == "/home" {
					return 10 * gib, nil
				}
				return 0, fs.ErrNotExist
			}
		}, want: []check{{"disk", "warn", "10 GiB free under /home (an image", "free space or set KMODVM_HOME to a bigger disk"}}},
		{name: "disk unknown", check: "disk", change: func(h *host, _ map[string]fs.FileInfo, _ map[string]string) {
			h.statfs = func(string) (uint64, error) { return 0, fs.ErrNotExist }
		}, want: []check{{"disk", "warn", "cannot stat " + testPaths.Cache, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
			h, files, text := fakeHost()
			if tt.change != nil {
				tt.change(&h, files, text)
			}
			uri := tt.uri
			if uri == "" {
				uri = vm.URISystem
			}
			checks := hostChecks(h, uri, testPaths)
			for _, c := range checks {
				if c.Status != "ok" && c.Status != "warn" && c.Status != "fail" {
					t.Errorf("check %s has status %q", c.Name, c.Status)
				}
			}
			got := findCheck(checks, tt.check)
			if len(got) != len(tt.want) {
				t.Fatalf("%s checks = %+v, want %d", tt.check, got, len(tt.want))
			}
			for i, w := range tt.want {
				g := got[i]
				if g.Status != w.Status || !strings.Contains(g.Detail, w.Detail) || g.Fix != w.Fix {
					t.Errorf("got  %+v\nwant %+v (detail as a substring)", g, w)
				}
			}
		})
	}
}

// TestHostChecksAllWell: on a well set up host every finding is ok, in a stable order.
func TestHostChecksAllWell(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	h, _, _ := fakeHost()
	var names []string
	for _, c := range hostChecks(h, vm.URISystem, testPaths) {
		names = append(names, c.Name)
		if c.Status != "ok" {
			t.Errorf("%+v is not ok", c)
		}
	}
	want := "virtlogd socket groups qemu-system-x86_64 qemu-img mmdebstrap bwrap mkfs.ext4 debugfs newuidmap newgidmap passt userns cache tmp disk"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("checks %s\nwant   %s", got, want)
	}
}

func TestRealHost(t *testing.T) {
	h := realHost()
	if h.username() == "" {
		t.Error("no user name")
	}
	if _, err := h.statfs(t.TempDir()); err != nil {
		t.Errorf("statfs: %v", err)
	}
	if err := h.dial(t.TempDir() + "/none"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("dial of a missing socket: %v", err)
	}
	if _, err := h.lookupGroup("kmodvm-no-such-group"); err == nil {
		t.Error("lookupGroup found a group that does not exist")
	}
}
