package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/module"
)

// TestE2ENew: the modules `kmodvm new` writes, in Rust and in C, build, load, greet and pass
// their KUnit tests on kmodvm's kernel; the first run starts a VM that does not exist yet
// (as up would), a run with --no-up on a stopped VM fails with the hint, and the next run
// starts it again; the skeleton's Makefile builds it in the guest with a plain make.
func TestE2ENew(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	name, _ := e2eVM(t, "e2e-new")
	n := []string{"-n", name}
	parent := t.TempDir()

	mods := []struct {
		dir, lang, module, greeting string
		tests                       []string
	}{
		{dir: "hello-rs", lang: "rust", module: "hello_rs", greeting: "hello_rs: Hello, world, from Rust!",
			tests: []string{"pass     greets_the_world", "pass     greets_whom_verbatim"}},
		{dir: "hello-c", lang: "c", module: "hello_c", greeting: "hello_c: Hello, world, from C!",
			tests: []string{"pass     hello_c_greets_the_world", "pass     hello_c_greets_whom_verbatim"}},
	}
	for _, m := range mods {
		out := mustCLI(t, ctx, "new", "--json", "--lang", m.lang, "--dir", parent, m.dir)
		var nj newJSON
		if err := json.Unmarshal([]byte(out), &nj); err != nil || nj.Dir != filepath.Join(parent, m.dir) || nj.Module != m.module {
			t.Fatalf("new --json: %+v, %v", nj, err)
		}
	}

	for i, m := range mods {
		dir := filepath.Join(parent, m.dir)
		code, out, errOut := cli(t, ctx, append(append([]string{"run"}, n...), dir)...)
		if code != 0 || !strings.Contains(out, m.greeting) || !strings.Contains(out, m.module+": Goodbye") || !strings.Contains(out, "verdict: ok") {
			t.Errorf("run %s: exit %d, want 0 with %q and its goodbye:\n%s", m.dir, code, m.greeting, out)
		}
		if started := strings.Contains(errOut, "is not running: starting it as `kmodvm up` does"); started != (i == 0) {
			t.Errorf("run %s: started the VM %v, want %v (only the first run finds no VM)", m.dir, started, i == 0)
		}

		test := append(append([]string{"test"}, n...), dir)
		code, out, _ = cli(t, ctx, test...)
		if code != 0 || !strings.Contains(out, "tests:   2 passed, 0 failed, 0 crashed, 0 skipped") {
			t.Errorf("test %s: exit %d, want 0 and its 2 tests passed:\n%s", m.dir, code, out)
		}
		for _, want := range append(m.tests, "suite "+m.module+" ") {
			if !strings.Contains(out, want) {
				t.Errorf("test %s: output lacks %q", m.dir, want)
			}
		}
	}

	// --no-up: a stopped VM is an error with the hint, and stays stopped; without it the
	// next run starts the VM again.
	mustCLI(t, ctx, append([]string{"down"}, n...)...)
	rs := filepath.Join(parent, "hello-rs")
	code, _, errOut := cli(t, ctx, append(append([]string{"run", "--no-up"}, n...), rs)...)
	if code != exitFailure || !strings.Contains(errOut, "kmodvm up -n "+name) || strings.Contains(errOut, "starting it") {
		t.Errorf("run --no-up on a stopped VM: exit %d, want %d with the up hint:\n%s", code, exitFailure, errOut)
	}
	if out := mustCLI(t, ctx, append(n, "status", "--json")...); !strings.Contains(out, `"state": "shutoff"`) {
		t.Errorf("run --no-up started the VM: %s", out)
	}
	code, out, errOut := cli(t, ctx, append(append([]string{"run"}, n...), rs)...)
	if code != 0 || !strings.Contains(out, mods[0].greeting) || !strings.Contains(errOut, "is not running: starting it") {
		t.Errorf("run on the stopped VM: exit %d, want 0 after starting it:\n%s\n%s", code, out, errOut)
	}

	// The skeleton's Makefile: a plain make in the module's directory builds the module
	// against the running kernel, in the guest.
	c := filepath.Join(parent, "hello-c")
	mustCLI(t, ctx, append(n, "sync", c)...)
	remote := module.RemoteDir(c)
	out = mustCLI(t, ctx, append(n, "exec", "--", "sh", "-c", "cd "+remote+" && make >/dev/null && modinfo -F name ./hello_c.ko && make clean >/dev/null && ls")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "hello_c" || slices.Contains(lines, "hello_c.ko") {
		t.Errorf("make in the guest did not build hello_c.ko (modinfo's name first), or make clean did not remove it (ls after):\n%s", out)
	}
}
