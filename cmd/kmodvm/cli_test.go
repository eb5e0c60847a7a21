package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// These tests drive the CLI in-process through run(), in a temporary directory with its
// own KMODVM_HOME, and need no libvirtd, network or root. Commands that would reach libvirt
// get a URI whose socket does not exist (see nowhereURI), so a test never talks to a
// libvirtd this machine may run.

// cliResult is what one in-process kmodvm invocation did.
type cliResult struct {
	code           int
	stdout, stderr string
}

// isolate points KMODVM_HOME and the XDG directories at temp dirs, so that nothing outside
// the test is read or written.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv("KMODVM_HOME", filepath.Join(t.TempDir(), "home"))
	for _, v := range []string{"XDG_RUNTIME_DIR", "XDG_STATE_HOME", "XDG_CACHE_HOME"} {
		t.Setenv(v, t.TempDir())
	}
}

// runIn runs kmodvm with args in dir (a fresh temp dir when ""); call isolate first. It
// fails the test if kmodvm takes longer than 30 s: nothing here waits on anything that
// may take that long.
func runIn(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	t.Chdir(dir)
	if args == nil {
		args = []string{} // cobra reads os.Args for nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &out, &errb)
	if ctx.Err() != nil {
		t.Fatalf("kmodvm %s did not finish within 30 s", strings.Join(args, " "))
	}
	t.Logf("kmodvm %s -> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return cliResult{code, out.String(), errb.String()}
}

// nowhereURI is a libvirt URI whose socket does not exist.
func nowhereURI(t *testing.T) string {
	return "qemu:///session?socket=" + filepath.Join(t.TempDir(), "no-libvirt-sock")
}

// writeFiles creates files (relative path -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checkUserMessage checks an error as users see it: one "kmodvm: " message, one paragraph,
// no Go stack trace.
func checkUserMessage(t *testing.T, stderr string) {
	t.Helper()
	if !strings.HasPrefix(stderr, "kmodvm: ") {
		t.Errorf("stderr does not start with \"kmodvm: \":\n%s", stderr)
	}
	if strings.Count(stderr, "kmodvm: ") != 1 {
		t.Errorf("stderr holds more than one message:\n%s", stderr)
	}
	if strings.Contains(strings.TrimRight(stderr, "\n"), "\n\n") {
		t.Errorf("stderr is more than one paragraph:\n%s", stderr)
	}
	for _, bad := range []string{"panic", "goroutine ", ".go:", "runtime."} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr contains %q (a Go crash or stack trace?):\n%s", bad, stderr)
		}
	}
}

const helloKbuild = "obj-m := hello.o\n"

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name  string
		args  []string // "@NOWHERE" is replaced by nowhereURI
		files map[string]string
		env   map[string]string
		code  int
		// stdout and stderr must contain each of these.
		stdout, stderr []string
	}{
		{name: "unknown command", args: []string{"bogus"}, code: exitUsage,
			stderr: []string{`unknown command "bogus" for "kmodvm"`, "hint: run `kmodvm --help`"}},
		{name: "unknown command suggests", args: []string{"stauts"}, code: exitUsage,
			stderr: []string{`unknown command "stauts" for "kmodvm" (did you mean status?)`}},
		{name: "mistyped subcommand", args: []string{"kernel", "biuld"}, code: exitUsage,
			stderr: []string{`unknown command "biuld" for "kmodvm kernel"`, "hint: run `kmodvm kernel --help`"}},
		{name: "unknown flag", args: []string{"status", "--bogus"}, code: exitUsage,
			stderr: []string{"unknown flag: --bogus", "hint: run `kmodvm status --help`"}},
		{name: "unknown shorthand flag", args: []string{"run", "-Z"}, code: exitUsage,
			stderr: []string{"unknown shorthand flag: 'Z'"}},
		{name: "flag needs an argument", args: []string{"run", "--build"}, code: exitUsage,
			stderr: []string{"flag needs an argument: --build"}},
		{name: "bad int flag", args: []string{"run", "--reload", "x"}, code: exitUsage,
			stderr: []string{`invalid argument "x" for "--reload"`}},
		{name: "bad duration flag", args: []string{"down", "--timeout", "soon"}, code: exitUsage,
			stderr: []string{`invalid argument "soon" for "--timeout"`}},
		{name: "extra argument", args: []string{"status", "extra"}, code: exitUsage,
			stderr: []string{`unknown command "extra" for "kmodvm status"`}},
		{name: "too many arguments", args: []string{"run", "a", "b"}, code: exitUsage,
			stderr: []string{"accepts at most 1 arg(s), received 2"}},
		{name: "exec without a command", args: []string{"exec"}, code: exitUsage,
			stderr: []string{"requires at least 1 arg(s)"}},

		{name: "bad --build", args: []string{"run", "m", "--build", "bogus", "--uri", "@NOWHERE"},
			files: map[string]string{"m/Kbuild": helloKbuild}, code: exitUsage,
			stderr: []string{`--build "bogus" is not one of auto, guest, host`, "hint:"}},
		{name: "bad module.build in kmodvm.yaml", args: []string{"run", "m"},
			files: map[string]string{"m/Kbuild": helloKbuild, "kmodvm.yaml": "module:\n  build: bogus\n"}, code: exitUsage,
			stderr: []string{"kmodvm.yaml:2:", "module.build", `"bogus"`}},
		{name: "malformed kmodvm.yaml", args: []string{"status"},
			files: map[string]string{"kmodvm.yaml": "name: kmodvm\nvm: [memory\n"}, code: exitUsage,
			stderr: []string{"kmodvm.yaml:", "hint:"}},
		{name: "unknown key in kmodvm.yaml", args: []string{"status"},
			files: map[string]string{"kmodvm.yaml": "name: kmodvm\nvm:\n  memroy: 1024\n"}, code: exitUsage,
			stderr: []string{"kmodvm.yaml:3:", `unknown key "memroy"`, `did you mean "memory"`, "hint:"}},
		{name: "unknown top-level key", args: []string{"down"},
			files: map[string]string{"kmodvm.yaml": "# settings\n\nnmae: x\n"}, code: exitUsage,
			stderr: []string{"kmodvm.yaml:3:", `unknown key "nmae"`}},
		{name: "wrong type in kmodvm.yaml", args: []string{"status"},
			files: map[string]string{"kmodvm.yaml": "vm:\n  cpus: many\n"}, code: exitUsage,
			stderr: []string{"kmodvm.yaml:2:", "cpus"}},
		{name: "--config names a missing file", args: []string{"status", "--config", "nope.yaml"}, code: exitUsage,
			stderr: []string{"nope.yaml"}},
		{name: "--config with an unknown key", args: []string{"status", "--config", "conf/other.yaml"},
			files: map[string]string{"conf/other.yaml": "module:\n  params: []\n  parms: [a=1]\n"}, code: exitUsage,
			stderr: []string{"other.yaml:3:", `unknown key "parms"`}},
		{name: "bad VM name", args: []string{"status", "-n", "Bad_Name"}, code: exitUsage,
			stderr: []string{`"Bad_Name" is not a valid VM name`}},
		{name: "bad URI", args: []string{"status", "--uri", "http://example.com/"}, code: exitUsage,
			stderr: []string{"is not a libvirt QEMU URI"}},
		{name: "relative KMODVM_HOME", args: []string{"status", "--uri", "@NOWHERE"}, env: map[string]string{"KMODVM_HOME": "rel/home"}, code: exitUsage,
			stderr: []string{`KMODVM_HOME="rel/home" is not an absolute path`, "hint:"}},
		{name: "bad --accel", args: []string{"up", "--accel", "hyperv", "--uri", "@NOWHERE"}, code: exitUsage,
			stderr: []string{"vm.accel", "hyperv"}},
		{name: "bad --port", args: []string{"up", "--port", "22", "--uri", "@NOWHERE"}, code: exitUsage,
			stderr: []string{"vm.port", "22 is not 0", "hint:"}},
		{name: "--port above 65535", args: []string{"up", "--port", "70000", "--uri", "@NOWHERE"}, code: exitUsage,
			stderr: []string{"vm.port", "70000"}},
		{name: "bad --level", args: []string{"logs", "--level", "loud"}, code: exitUsage,
			stderr: []string{`unknown kernel log level "loud"`, "hint:"}},

		{name: "run without Kbuild", args: []string{"run"}, files: map[string]string{"README": "hi\n"}, code: exitUsage,
			stderr: []string{"has no Kbuild or Makefile", "hint:"}},
		{name: "run on a missing dir", args: []string{"run", "nope"}, code: exitUsage,
			stderr: []string{"module directory nope does not exist", "hint:"}},
		{name: "run on a Kbuild without obj-m", args: []string{"run", "m"}, files: map[string]string{"m/Kbuild": "ccflags-y := -O2\n"}, code: exitUsage,
			stderr: []string{"names no module", "hint:"}},
		{name: "sync without Kbuild", args: []string{"sync", "."}, code: exitUsage,
			stderr: []string{"has no Kbuild or Makefile", "hint:"}},
		{name: "param without =", args: []string{"run", "m", "-p", "debug", "--uri", "@NOWHERE"},
			files: map[string]string{"m/Kbuild": helloKbuild}, code: exitUsage,
			stderr: []string{`module parameter "debug": "debug" is not a module parameter: write it as name=value`, "hint:"}},
		{name: "param with a space in the name", args: []string{"run", "m", "-p", "a b=1", "--uri", "@NOWHERE"},
			files: map[string]string{"m/Kbuild": helloKbuild}, code: exitUsage,
			stderr: []string{`module parameter "a b=1"`}},
		{name: "param with an empty name", args: []string{"run", "m", "--param=", "--param", "=1", "--uri", "@NOWHERE"},
			files: map[string]string{"m/Kbuild": helloKbuild}, code: exitUsage,
			stderr: []string{`module parameter ""`}},
		{name: "bad param in kmodvm.yaml", args: []string{"run", "m"},
			files: map[string]string{"m/Kbuild": helloKbuild, "kmodvm.yaml": "module:\n  params: [\"x\"]\n"}, code: exitUsage,
			stderr: []string{"module.params[0]"}},

		{name: "--help", args: []string{"--help"}, code: exitOK,
			stdout: []string{"Usage:", "kmodvm run ./mymodule", "Exit codes: 0 ok"}},
		{name: "no arguments shows help", args: nil, code: exitOK,
			stdout: []string{"Usage:", "Available Commands:"}},
		{name: "run --help", args: []string{"run", "--help"}, code: exitOK,
			stdout: []string{"kmodvm run [DIR]", "--build", "5 the kernel reported a problem"}},
		{name: "--help ignores a broken kmodvm.yaml", args: []string{"status", "--help"},
			files: map[string]string{"kmodvm.yaml": "bogus: 1\n"}, code: exitOK,
			stdout: []string{"kmodvm status"}},
		{name: "help command ignores a broken kmodvm.yaml", args: []string{"help", "logs"},
			files: map[string]string{"kmodvm.yaml": "bogus: 1\n"}, code: exitOK,
			stdout: []string{"kmodvm logs", "--follow"}},
		{name: "completion ignores a broken kmodvm.yaml", args: []string{"completion", "bash"},
			files: map[string]string{"kmodvm.yaml": "bogus: 1\n"}, code: exitOK,
			stdout: []string{"bash completion"}},
		{name: "group without subcommand shows help", args: []string{"kernel"},
			files: map[string]string{"kmodvm.yaml": "bogus: 1\n"}, code: exitOK,
			stdout: []string{"kmodvm kernel [command]", "config", "build"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var args []string
			for _, a := range tt.args {
				if a == "@NOWHERE" {
					a = nowhereURI(t)
				}
				args = append(args, a)
			}
			res := runIn(t, dir, args...)
			if res.code != tt.code {
				t.Errorf("exit %d, want %d", res.code, tt.code)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("stdout lacks %q", want)
				}
			}
			for _, want := range tt.stderr {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			if tt.code != exitOK {
				checkUserMessage(t, res.stderr)
				if res.stdout != "" {
					t.Errorf("a failed command printed to stdout:\n%s", res.stdout)
				}
			} else if res.stderr != "" {
				t.Errorf("a successful command printed to stderr:\n%s", res.stderr)
			}
		})
	}
}

// TestLibvirtUnreachable: every command that needs libvirt fails with exit 1 and one
// paragraph that says libvirtd is not running and how to start it.
func TestLibvirtUnreachable(t *testing.T) {
	uris := []struct {
		name  string
		uri   func(t *testing.T) string
		setup func(t *testing.T)
		want  []string
	}{
		{name: "socket parameter", uri: nowhereURI,
			want: []string{"connect to libvirt qemu:///session", "libvirtd is not running", "hint: start the per-user daemon"}},
		// No daemon program can be found, so kmodvm cannot start one (and a unit test never
		// starts the host's libvirtd).
		{name: "session with an empty XDG_RUNTIME_DIR, no daemon installed",
			uri: func(*testing.T) string { return "qemu:///session" },
			setup: func(t *testing.T) {
				t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
				t.Setenv("PATH", t.TempDir())
				saved := hosttool.SbinDirs
				hosttool.SbinDirs = []string{t.TempDir()}
				t.Cleanup(func() { hosttool.SbinDirs = saved })
			},
			want: []string{"connect to libvirt qemu:///session", "neither libvirtd nor virtqemud is installed", "hint: sudo apt-get install libvirt-daemon"}},
	}
	cmds := [][]string{
		{"status"}, {"status", "--json"}, {"down"}, {"destroy"}, {"list"}, {"logs"},
		{"run", "m"}, {"sync", "m"}, {"-n", "other", "status"},
	}
	for _, u := range uris {
		for _, c := range cmds {
			t.Run(u.name+"/"+strings.Join(c, " "), func(t *testing.T) {
				isolate(t)
				if u.setup != nil {
					u.setup(t)
				}
				dir := t.TempDir()
				writeFiles(t, dir, map[string]string{"m/Kbuild": helloKbuild})
				res := runIn(t, dir, append(c, "--uri", u.uri(t))...)
				if res.code != exitFailure {
					t.Errorf("exit %d, want %d", res.code, exitFailure)
				}
				checkUserMessage(t, res.stderr)
				for _, want := range u.want {
					if !strings.Contains(res.stderr, want) {
						t.Errorf("stderr lacks %q", want)
					}
				}
				if res.stdout != "" {
					t.Errorf("stdout is not empty:\n%s", res.stdout)
				}
			})
		}
	}
}

// TestInterrupted: a command cut short by Ctrl-C says so and exits 130.
func TestInterrupted(t *testing.T) {
	isolate(t)
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"status", "--uri", nowhereURI(t)}, strings.NewReader(""), &out, &errb)
	if code != 130 {
		t.Errorf("exit %d, want 130", code)
	}
	if !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("stderr does not say interrupted:\n%s", errb.String())
	}
}

// TestDoctorWithoutLibvirt: doctor reports the unreachable libvirt as a failure with a fix,
// and exits 1, in text and in JSON.
func TestDoctorWithoutLibvirt(t *testing.T) {
	t.Run("text", func(t *testing.T) {
		isolate(t)
		res := runIn(t, "", "doctor", "--uri", nowhereURI(t))
		if res.code != exitFailure {
			t.Errorf("exit %d, want %d", res.code, exitFailure)
		}
		var libvirtLine, fixLine string
		lines := strings.Split(res.stdout, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "fail  libvirt ") {
				libvirtLine = l
				if i+1 < len(lines) {
					fixLine = lines[i+1]
				}
			}
		}
		if !strings.Contains(libvirtLine, "libvirtd is not running") {
			t.Errorf("no libvirt failure line saying libvirtd is not running in:\n%s", res.stdout)
		}
		if !strings.Contains(fixLine, "fix: start the daemons") {
			t.Errorf("libvirt failure is not followed by its fix; got %q", fixLine)
		}
		for _, name := range []string{"disk", "kvm", "qemu-img", "passt"} {
			if !strings.Contains(res.stdout, " "+name+" ") {
				t.Errorf("no %s check in:\n%s", name, res.stdout)
			}
		}
	})
	t.Run("json", func(t *testing.T) {
		isolate(t)
		res := runIn(t, "", "doctor", "--json", "--uri", nowhereURI(t))
		if res.code != exitFailure {
			t.Errorf("exit %d, want %d", res.code, exitFailure)
		}
		var doc doctorJSON
		if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
			t.Fatalf("stdout is not doctor's JSON: %v\n%s", err, res.stdout)
		}
		if doc.Schema != schemaDoctor || doc.OK {
			t.Errorf("schema %q, ok %v; want %q, false (libvirt is unreachable)", doc.Schema, doc.OK, schemaDoctor)
		}
		checks := doc.Checks
		found := false
		for _, c := range checks {
			if c.Status != "ok" && c.Status != "warn" && c.Status != "fail" {
				t.Errorf("check %s has status %q", c.Name, c.Status)
			}
			if c.Name == "libvirt" {
				found = true
				if c.Status != "fail" || c.Fix == "" {
					t.Errorf("libvirt check = %+v, want a failure with a fix", c)
				}
			}
		}
		if !found {
			t.Errorf("no libvirt check in %+v", checks)
		}
	})
}

func TestIsUsageError(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{errors.New(`unknown command "x" for "kmodvm"`), true},
		{errors.New("accepts at most 1 arg(s), received 2"), true},
		{errors.New("requires at least 1 arg(s), only received 0"), true},
		{errors.New(`invalid argument "x" for "--reload" flag: strconv.ParseInt: parsing "x": invalid syntax`), true},
		{errors.New("connect to libvirt: connection refused"), false},
		// kmodvm's own failures that happen to read like cobra's are not usage errors.
		{fmt.Errorf("open /dev/kvm: %w", syscall.EINVAL), false},
		{fmt.Errorf("guest: %w", errors.New("sshd accepts no key")), false},
	}
	for _, tt := range tests {
		if got := isUsageError(tt.err); got != tt.want {
			t.Errorf("isUsageError(%q) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestDiskFullHint(t *testing.T) {
	tests := []struct {
		err  error
		full bool
	}{
		{fmt.Errorf("create overlay: %w", &os.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}), true},
		{fmt.Errorf("write: %w", syscall.EDQUOT), true},
		{errors.New("image build failed (mmdebstrap exited 1); last lines:\nE: write error: No space left on device"), true},
		{errors.New("connect to libvirt: permission denied"), false},
		{fmt.Errorf("x: %w", syscall.EACCES), false},
	}
	for _, tt := range tests {
		if got := isDiskFull(tt.err); got != tt.full {
			t.Errorf("isDiskFull(%q) = %v, want %v", tt.err, got, tt.full)
		}
	}
	env := map[string]string{"KMODVM_HOME": "/srv/kmodvm"}
	hint := diskFullHint(func(k string) string { return env[k] })
	for _, want := range []string{"hint:", "/srv/kmodvm/cache", "/srv/kmodvm/state", "KMODVM_HOME"} {
		if !strings.Contains(hint, want) {
			t.Errorf("hint %q lacks %q", hint, want)
		}
	}
}
