package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/vmtest"
)

// TestLibvirtURIIsTheConfiguredOne: the CLI reaches libvirt at vm.uri from kmodvm.yaml, or at
// --uri, which overrides it, and nowhere else. Each URI names the socket of a fake libvirtd
// that records the URI a client opens on it.
func TestLibvirtURIIsTheConfiguredOne(t *testing.T) {
	tests := []struct {
		name             string
		inYAML, withFlag bool
	}{
		{name: "vm.uri", inYAML: true},
		{name: "--uri", withFlag: true},
		{name: "--uri over vm.uri", inYAML: true, withFlag: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			yamlDaemon, flagDaemon := vmtest.NewDaemon(t), vmtest.NewDaemon(t)
			dir := t.TempDir()
			args := []string{"status", "-n", "dev"}
			if tt.inYAML {
				writeFiles(t, dir, map[string]string{"kmodvm.yaml": "vm:\n  uri: qemu:///system?socket=" + yamlDaemon.Socket + "\n"})
			}
			if tt.withFlag {
				args = append(args, "--uri", "qemu:///session?socket="+flagDaemon.Socket)
			}
			// The fake hangs up once the connection is open, so the command fails after that.
			if res := runIn(t, dir, args...); res.code != exitFailure {
				t.Errorf("exit %d, want %d once the fake daemon hangs up", res.code, exitFailure)
			}
			var wantYAML, wantFlag []string
			switch {
			case tt.withFlag:
				wantFlag = []string{"qemu:///session"}
			case tt.inYAML:
				wantYAML = []string{"qemu:///system"}
			}
			// The connection redials once the fake hangs up (as after a libvirtd restart): the
			// same URI again, never another.
			if got := slices.Compact(yamlDaemon.Opened()); !slices.Equal(got, wantYAML) {
				t.Errorf("vm.uri's daemon saw %q opened, want %q", got, wantYAML)
			}
			if got := slices.Compact(flagDaemon.Opened()); !slices.Equal(got, wantFlag) {
				t.Errorf("--uri's daemon saw %q opened, want %q", got, wantFlag)
			}
		})
	}
}

// TestHostileInputRefusedBeforeConnecting: a module tree with a symlink leading out of it or
// a ".." in its .kmodvmignore, and a parameter value the kernel cannot carry, are usage
// errors (exit 2, one paragraph with a hint) found before kmodvm reaches libvirt: the fake
// daemon behind --uri sees no connection.
func TestHostileInputRefusedBeforeConnecting(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, mod string)
		args   []string // after the command, before the module dir
		stderr []string
	}{
		{name: "symlink to /etc/shadow",
			setup:  func(t *testing.T, mod string) { symlink(t, "/etc/shadow", filepath.Join(mod, "shadow")) },
			stderr: []string{"symlink shadow -> /etc/shadow points outside the module directory", "hint:"}},
		{name: "symlink to a directory above",
			setup:  func(t *testing.T, mod string) { symlink(t, "../..", filepath.Join(mod, "up")) },
			stderr: []string{"symlink up -> ../.. points outside", "hint:"}},
		{name: "dotdot in .kmodvmignore",
			setup: func(t *testing.T, mod string) {
				writeFiles(t, mod, map[string]string{".kmodvmignore": "!../secret\n"})
			},
			stderr: []string{".kmodvmignore line 1", `".." cannot be used`, "hint:"}},
		{name: "double quote in a parameter value", args: []string{"-p", `whom=say "hi"`},
			stderr: []string{`module parameter "whom=say \"hi\""`, "double quote", "hint:"}},
	}
	for _, tt := range tests {
		for _, cmd := range []string{"run", "sync"} {
			if cmd == "sync" && tt.args != nil {
				continue // sync takes no parameters
			}
			t.Run(tt.name+"/"+cmd, func(t *testing.T) {
				isolate(t)
				daemon := vmtest.NewDaemon(t)
				dir := t.TempDir()
				mod := filepath.Join(dir, "m")
				writeFiles(t, mod, map[string]string{"Kbuild": helloKbuild, "hello.c": "int x;\n"})
				if tt.setup != nil {
					tt.setup(t, mod)
				}
				args := append(append([]string{cmd, "--uri", "qemu:///system?socket=" + daemon.Socket}, tt.args...), mod)
				res := runIn(t, dir, args...)
				if res.code != exitUsage {
					t.Errorf("exit %d, want %d", res.code, exitUsage)
				}
				checkUserMessage(t, res.stderr)
				for _, want := range tt.stderr {
					if !strings.Contains(res.stderr, want) {
						t.Errorf("stderr lacks %q", want)
					}
				}
				if got := daemon.Opened(); len(got) != 0 {
					t.Errorf("libvirt was reached (%q) although the input was refused", got)
				}
			})
		}
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}
