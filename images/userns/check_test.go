package userns

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/hosttool"
)

func TestParseSubids(t *testing.T) {
	tests := []struct {
		name       string
		file       string
		start, cnt int
		ok         bool
	}{
		{"empty", "", 0, 0, false},
		{"by name", "alice:100000:65536\n", 100000, 65536, true},
		{"by uid", "1000:231072:65536\n", 231072, 65536, true},
		{"other user", "bob:100000:65536\n", 0, 0, false},
		{"comments and garbage", "# comment\n\n  \nalice\nalice:x:65536\nalice:1:2:3\n:1:65536\nalice:-5:65536\nalice:5:0\nalice:100000:65536\n", 100000, 65536, true},
		{"first big block wins", "alice:10:100\nalice:200000:65536\nalice:300000:70000\n", 200000, 65536, true},
		{"largest small block", "alice:10:100\nalice:1000:5000\nalice:9000:200\n", 1000, 5000, true},
		{"spaces around", "  alice:100000:65536  \n", 100000, 65536, true},
		{"beyond 32 bits", "alice:4294967295:65536\n", 0, 0, false},
		{"name that is a prefix", "alic:100000:65536\nalice2:1:65536\n", 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, cnt, ok := ParseSubids(strings.NewReader(tt.file), "alice", 1000)
			if start != tt.start || cnt != tt.cnt || ok != tt.ok {
				t.Errorf("ParseSubids = %d, %d, %v; want %d, %d, %v", start, cnt, ok, tt.start, tt.cnt, tt.ok)
			}
		})
	}
}

func FuzzParseSubids(f *testing.F) {
	f.Add("alice:100000:65536\n", 1000)
	f.Add("# x\nalice:1:2\n1000:5:70000\nalice:99:x\n", 1000)
	f.Add("alice:4294967295:1\n", 0)
	f.Fuzz(func(t *testing.T, file string, uid int) {
		start, cnt, ok := ParseSubids(strings.NewReader(file), "alice", uid)
		again, cnt2, ok2 := ParseSubids(strings.NewReader(file), "alice", uid)
		if start != again || cnt != cnt2 || ok != ok2 {
			t.Fatalf("not deterministic")
		}
		if !ok {
			if start != 0 || cnt != 0 {
				t.Fatalf("no block but %d, %d", start, cnt)
			}
			return
		}
		if start < 0 || cnt <= 0 || start+cnt-1 > maxSubid {
			t.Fatalf("bad block %d, %d", start, cnt)
		}
		// The block is one of the user's lines, and a small one only when none is big enough.
		var own []subidBlock
		for _, b := range parseBlocks(strings.NewReader(file)) {
			if b.owner == "alice" || b.owner == strconv.Itoa(uid) {
				own = append(own, b)
			}
		}
		if !slices.ContainsFunc(own, func(b subidBlock) bool { return b.start == start && b.count == cnt }) {
			t.Fatalf("%d:%d is no block of the user", start, cnt)
		}
		for _, b := range own {
			if cnt < MinSubids && b.count > cnt {
				t.Fatalf("picked %d ids although a block has %d", cnt, b.count)
			}
		}
		// A range FreeRange picks never overlaps a block.
		first, last := FreeRange([]byte(file))
		for _, b := range parseBlocks(strings.NewReader(file)) {
			if b.start <= last && first < b.start+b.count {
				t.Fatalf("free range %d-%d overlaps %v", first, last, b)
			}
		}
	})
}

func TestFreeRange(t *testing.T) {
	tests := []struct {
		name        string
		uid, gid    string
		first, last int
	}{
		{"nothing taken", "", "", 100000, 165535},
		{"first taken", "bob:100000:65536\n", "", 165536, 231071},
		{"taken in subgid only", "", "bob:100000:65536\n", 165536, 231071},
		{"overlap at the end", "bob:165535:1\n", "", 165536, 231071},
		{"below the minimum does not count", "bob:10000:65536\n", "", 100000, 165535},
		{"a gap", "bob:100000:65536\ncarol:231072:65536\n", "dave:165536:10\n", 296608, 362143},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, last := FreeRange([]byte(tt.uid), []byte(tt.gid))
			if first != tt.first || last != tt.last {
				t.Errorf("FreeRange = %d-%d, want %d-%d", first, last, tt.first, tt.last)
			}
		})
	}
}

// fakeEnv is a host where everything is in order for alice (uid 1000).
func fakeEnv() (Env, *bool) {
	probed := new(bool)
	files := map[string]string{
		"/etc/subuid":                                "alice:100000:65536\n",
		"/etc/subgid":                                "alice:100000:65536\n",
		"/proc/sys/user/max_user_namespaces":         "63000\n",
		"/proc/sys/kernel/unprivileged_userns_clone": "1\n",
	}
	return Env{
		UID:  1000,
		User: "alice",
		ReadFile: func(p string) ([]byte, error) {
			if s, ok := files[p]; ok {
				return []byte(s), nil
			}
			return nil, fs.ErrNotExist
		},
		Find: func(tool string) (string, error) { return "/usr/bin/" + tool, nil },
		Stat: func(string) (ToolStat, error) {
			return ToolStat{Mode: 0o755 | fs.ModeSetuid, UID: 0}, nil
		},
		Probe: func() (string, error) { *probed = true; return "", nil },
	}, probed
}

func withFile(env Env, path, content string) Env {
	read := env.ReadFile
	env.ReadFile = func(p string) ([]byte, error) {
		if p == path {
			return []byte(content), nil
		}
		return read(p)
	}
	return env
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name      string
		env       func(Env) Env
		want      []Problem // What is matched as a substring
		wantProbe bool
	}{
		{name: "all well", env: func(e Env) Env { return e }, wantProbe: true},
		{name: "root needs nothing", env: func(e Env) Env {
			e.UID = 0
			e.Find = func(string) (string, error) { return "", errors.New("none") }
			return e
		}},
		{name: "uidmap missing", env: func(e Env) Env {
			e.Find = func(tool string) (string, error) { return "", hosttool.NotFound(tool) }
			return e
		}, want: []Problem{
			{"newuidmap is not installed", "sudo apt-get install uidmap"},
			{"newgidmap is not installed", "sudo apt-get install uidmap"},
		}},
		{name: "not setuid", env: func(e Env) Env {
			e.Stat = func(p string) (ToolStat, error) {
				if strings.HasSuffix(p, "newgidmap") {
					return ToolStat{Mode: 0o755, UID: 0}, nil
				}
				return ToolStat{Mode: 0o755 | fs.ModeSetuid, UID: 0}, nil
			}
			return e
		}, want: []Problem{{"/usr/bin/newgidmap is not setuid root", "sudo chown root:root /usr/bin/newgidmap && sudo chmod u+s /usr/bin/newgidmap"}}},
		{name: "setuid but not root's", env: func(e Env) Env {
			e.Stat = func(string) (ToolStat, error) { return ToolStat{Mode: 0o755 | fs.ModeSetuid, UID: 1000}, nil }
			return e
		}, want: []Problem{
			{"/usr/bin/newuidmap is not setuid root", "sudo chown root:root /usr/bin/newuidmap && sudo chmod u+s /usr/bin/newuidmap"},
			{"/usr/bin/newgidmap is not setuid root", "sudo chown root:root /usr/bin/newgidmap && sudo chmod u+s /usr/bin/newgidmap"},
		}},
		{name: "file capabilities will do", env: func(e Env) Env {
			e.Stat = func(string) (ToolStat, error) { return ToolStat{Mode: 0o755, UID: 0, Caps: true}, nil }
			return e
		}, wantProbe: true},
		{name: "stat fails", env: func(e Env) Env {
			e.Stat = func(string) (ToolStat, error) { return ToolStat{}, fs.ErrPermission }
			return e
		}, want: []Problem{
			{"cannot stat /usr/bin/newuidmap", "sudo apt-get install --reinstall uidmap"},
			{"cannot stat /usr/bin/newgidmap", "sudo apt-get install --reinstall uidmap"},
		}},
		{name: "no subids at all", env: func(e Env) Env {
			return withFile(withFile(e, "/etc/subuid", "bob:100000:65536\n"), "/etc/subgid", "")
		}, want: []Problem{{"/etc/subuid has no block for alice; /etc/subgid has no block for alice", "sudo usermod --add-subuids 165536-231071 --add-subgids 165536-231071 alice"}}},
		{name: "subgid too small", env: func(e Env) Env {
			return withFile(e, "/etc/subgid", "alice:300000:1000\n")
		}, want: []Problem{{"/etc/subgid gives alice only 1000 ids (from 300000)", "sudo usermod --add-subgids 165536-231071 alice"}}},
		{name: "subid files missing", env: func(e Env) Env {
			read := e.ReadFile
			e.ReadFile = func(p string) ([]byte, error) {
				if strings.HasPrefix(p, "/etc/sub") {
					return nil, fs.ErrNotExist
				}
				return read(p)
			}
			return e
		}, want: []Problem{{"/etc/subuid has no block for alice", "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice"}}},
		{name: "debian 10 knob", env: func(e Env) Env {
			return withFile(e, "/proc/sys/kernel/unprivileged_userns_clone", "0\n")
		}, want: []Problem{{"kernel.unprivileged_userns_clone is 0", "sudo sysctl -w kernel.unprivileged_userns_clone=1 (keep it: echo kernel.unprivileged_userns_clone=1 | sudo tee /etc/sysctl.d/90-userns.conf)"}}},
		{name: "no namespaces allowed", env: func(e Env) Env {
			return withFile(e, "/proc/sys/user/max_user_namespaces", "0\n")
		}, want: []Problem{{"user.max_user_namespaces is 0", "sudo sysctl -w user.max_user_namespaces=15000 (keep it: echo user.max_user_namespaces=15000 | sudo tee /etc/sysctl.d/90-userns.conf)"}}},
		{name: "ubuntu apparmor", env: func(e Env) Env {
			return withFile(e, "/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1\n")
		}, want: []Problem{{"kernel.apparmor_restrict_unprivileged_userns is 1", "an AppArmor profile with `userns,` for /usr/bin/unshare and /usr/bin/mmdebstrap, or sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"}}},
		{name: "apparmor knob off", env: func(e Env) Env {
			return withFile(e, "/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "0\n")
		}, wantProbe: true},
		{name: "probe fails", env: func(e Env) Env {
			e.Probe = func() (string, error) {
				return "unshare: write failed /proc/self/uid_map: Operation not permitted", errors.New("exit status 1")
			}
			return e
		}, want: []Problem{{"`unshare --map-root-user --map-auto true` failed: exit status 1: unshare: write failed /proc/self/uid_map: Operation not permitted", "unshare needs util-linux >= 2.38 for --map-auto; check the messages above and `dmesg` for a security module denying user namespaces"}}},
		{name: "no unshare", env: func(e Env) Env {
			e.Probe = func() (string, error) { return "", hosttool.NotFound("unshare") }
			return e
		}, want: []Problem{{"unshare: not found", "sudo apt-get install util-linux"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, probed := fakeEnv()
			got := Check(tt.env(base))
			if len(got) != len(tt.want) {
				t.Fatalf("Check = %q, want %d problems", got, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i].What, w.What) || got[i].Fix != w.Fix {
					t.Errorf("problem %d = %q\nwant What containing %q, Fix %q", i, got[i], w.What, w.Fix)
				}
			}
			if *probed != tt.wantProbe {
				t.Errorf("probe ran: %v, want %v", *probed, tt.wantProbe)
			}
		})
	}
}

func TestDefaultEnvIsComplete(t *testing.T) {
	env := DefaultEnv()
	if env.ReadFile == nil || env.Find == nil || env.Stat == nil || env.Probe == nil || env.User == "" {
		t.Fatalf("DefaultEnv leaves something out: %+v", env)
	}
}

func TestStatTool(t *testing.T) {
	p := t.TempDir() + "/newuidmap"
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := statTool(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.UID != os.Getuid() || st.Mode&fs.ModeSetuid != 0 || st.Caps {
		t.Errorf("statTool = %+v, want owner %d, no setuid, no caps", st, os.Getuid())
	}
	if _, err := statTool(p + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("statTool of a missing file: %v", err)
	}
}
