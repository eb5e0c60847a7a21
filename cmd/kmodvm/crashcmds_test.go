package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/crashes"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/module"
)

// crashVM is a VM in the test's KMODVM_HOME (its instance.json, its console log) whose runs
// do what runner says: the commands find its state where a real VM keeps it.
type crashVM struct {
	t       *testing.T
	dir     string // the VM's state directory
	console string
	runner  *crashRunner
}

// newCrashVM writes the state of VM name under KMODVM_HOME (call isolate first), with a
// console log that already holds an earlier boot.
func newCrashVM(t *testing.T, name string) *crashVM {
	t.Helper()
	dir := filepath.Join(os.Getenv("KMODVM_HOME"), "state", "vms", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	in := `{"name": "` + name + `", "accel": "tcg", "kernel_release": "7.2.0-kmodvm-1a2b3c4d", "config_hash": "c0ffee0123456789"}`
	if err := os.WriteFile(filepath.Join(dir, "instance.json"), []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	v := &crashVM{t: t, dir: dir, console: filepath.Join(dir, "console.log")}
	if err := os.WriteFile(v.console, []byte("[    0.000000] Linux version 7.2.0 (an earlier boot)\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v.runner = &crashRunner{console: v.console}
	return v
}

// crashRunner plays a run: it writes console to the console log and, for a host build, a
// .ko per module into the build directory, then returns result.
type crashRunner struct {
	console string
	result  module.Result
	written string // what the last run wrote to the console log
}

func (r *crashRunner) Run(_ context.Context, opt module.Options) (*module.Result, error) {
	res := r.result
	res.Module, res.Modules = opt.Source.Dir, opt.Source.Modules
	if err := os.MkdirAll(opt.BuildDir, 0o700); err != nil {
		return nil, err
	}
	for _, m := range opt.Source.Modules {
		if err := os.WriteFile(filepath.Join(opt.BuildDir, m+".ko"), []byte("ELF "+m), 0o644); err != nil {
			return nil, err
		}
	}
	var log strings.Builder
	for _, s := range res.Steps {
		for _, l := range s.Log {
			log.WriteString(l + "\n")
		}
	}
	r.written = log.String()
	f, err := os.OpenFile(r.console, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, err = f.WriteString(r.written)
	return &res, err
}

func (r *crashRunner) Close() error { return nil }

// run runs kmodvm with args in dir, its runs on this VM.
func (v *crashVM) run(dir string, args ...string) cliResult {
	v.t.Helper()
	v.t.Chdir(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := runApp(ctx, args, strings.NewReader(""), &out, &errb, func(a *app) {
		a.openVM = func(_ context.Context, name string, _ bool) (moduleVM, error) {
			sb, err := a.offline()
			if err != nil {
				return moduleVM{}, err
			}
			in, err := sb.Instance(name)
			if err != nil {
				return moduleVM{}, err
			}
			return moduleVM{in: in, runner: v.runner, release: func() {}}, nil
		}
	})
	v.t.Logf("kmodvm %s -> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return cliResult{code, out.String(), errb.String()}
}

// rustPanicResult is a run whose load hit the Rust panic of ktrace's fixture and took the
// guest down.
func rustPanicResult(t *testing.T) module.Result {
	t.Helper()
	data, err := os.ReadFile("../../provision/ktrace/testdata/traces/rust-panic.log")
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for _, r := range kmsg.ParseLog(string(data)) {
		log = append(log, r.Format(true))
	}
	title := "Rust panic at /root/mod/rust_oops.rs:19:9: index out of bounds: the len is 3 but the index is 7"
	return module.Result{
		Build: module.BuildResult{Where: module.BuildHost, OK: true},
		Steps: []module.Step{{Action: "load", Module: "rust_oops", Iteration: 1, Crashed: true, Error: "the guest stopped", Log: log,
			Findings: []kmsg.Finding{{Class: kmsg.ClassRustPanic, Title: title}}}},
		Restart: true, Verdict: module.VerdictKernelProblem, Title: title,
	}
}

// rustOopsVM isolates the test and returns VM name, whose runs hit rustPanicResult, and a
// module directory holding a Kbuild for rust_oops and files.
func rustOopsVM(t *testing.T, name string, files map[string]string) (*crashVM, string) {
	t.Helper()
	isolate(t)
	mod := t.TempDir()
	writeFiles(t, mod, map[string]string{"Kbuild": "obj-m := rust_oops.o\n"})
	writeFiles(t, mod, files)
	v := newCrashVM(t, name)
	v.runner.result = rustPanicResult(t)
	return v, mod
}

var crashLine = regexp.MustCompile(`(?m)^crash:   kept as (\S+) \(kmodvm crashes show (\S+)\)$`)

func TestRunKeepsCrash(t *testing.T) {
	v, mod := rustOopsVM(t, "kmodvm", nil)

	r := v.run(mod, "run", mod)
	m := crashLine.FindStringSubmatch(r.stdout)
	if r.code != exitKernelIssue || m == nil || m[1] != m[2] || !strings.HasSuffix(m[1], "-rust_oops") {
		t.Fatalf("exit %d, crash line %q; want exit 5 and the bundle's ID", r.code, m)
	}
	id := m[1]
	bundle := filepath.Join(v.dir, "crashes", id)

	// The bundle: the console since the run started (not the earlier boot), the module's
	// log, the traces, the .ko from the host build, meta.json.
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join(bundle, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if got := read(crashes.ConsoleFile); got != v.runner.written {
		t.Errorf("console.log holds\n%s\nwant what the run wrote:\n%s", got, v.runner.written)
	}
	if got := read("rust_oops.ko"); got != "ELF rust_oops" {
		t.Errorf("rust_oops.ko = %q", got)
	}
	if got := read(crashes.KmsgFile); !strings.HasPrefix(got, "# load rust_oops (#1): the guest died or hung") || !strings.Contains(got, "panicked at /root/mod/rust_oops.rs:19:9") {
		t.Errorf("kmsg.txt:\n%s", got)
	}
	if got := read(crashes.TraceText); !strings.Contains(got, "<rust_oops::RustOops as kernel::Module>::init+0x61/0x70  [rust_oops]") {
		t.Errorf("trace.txt:\n%s", got)
	}
	var meta crashes.Meta
	if err := json.Unmarshal([]byte(read(crashes.MetaFile)), &meta); err != nil {
		t.Fatal(err)
	}
	if meta.Schema != "kmodvm.crash/v1" || meta.ID != id || meta.VM != "kmodvm" || meta.Command != "kmodvm run "+mod ||
		meta.ModuleDir != mod || meta.Module != "rust_oops" || meta.Class != "rust-panic" || meta.Step != "load rust_oops (#1)" ||
		meta.KernelRelease != "7.2.0-kmodvm-1a2b3c4d" || meta.ConfigHash != "c0ffee0123456789" || meta.SourceRevision != "" ||
		!meta.GuestRestarted || len(meta.Kos) != 1 || meta.KoNote != "" {
		t.Errorf("meta.json: %+v", meta)
	}

	// crashes lists it; show finds it by a prefix and prints meta, the bundle's path, the trace.
	r = v.run(mod, "crashes")
	if r.code != 0 || !strings.Contains(r.stdout, "ID") || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "rust_oops") || !strings.Contains(r.stdout, "Rust panic at") {
		t.Errorf("crashes: exit %d\n%s", r.code, r.stdout)
	}
	r = v.run(mod, "crashes", "show", id[:len(id)-3])
	for _, want := range []string{"id:", id, "bundle:", bundle, "verdict:", "kernel-problem", "kernel:", "7.2.0-kmodvm-1a2b3c4d (config c0ffee012345)", "panicked at /root/mod/rust_oops.rs:19:9", "rust_oops.ko"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("crashes show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = v.run(mod, "crashes", "show", "--json", id)
	var shown crashJSON
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil || shown.Schema != schemaCrash || shown.Dir != bundle || len(shown.Traces) != 1 || shown.Traces[0].Kind != "rust-panic" {
		t.Errorf("crashes show --json: %v\n%s", err, r.stdout)
	}
	r = v.run(mod, "crashes", "list", "--json")
	var listed crashesJSON
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || listed.Schema != schemaCrashes || len(listed.Crashes) != 1 || listed.Crashes[0].ID != id {
		t.Errorf("crashes list --json: %v\n%s", err, r.stdout)
	}

	// run --json names the bundle too.
	r = v.run(mod, "run", "--json", mod)
	var rj runJSON
	if err := json.Unmarshal([]byte(r.stdout), &rj); err != nil || rj.CrashID == "" || rj.CrashID == id {
		t.Errorf("run --json crash_id %q (first bundle %s): %v", rj.CrashID, id, err)
	}
}

func TestRunWithoutCrashKeepsNothing(t *testing.T) {
	isolate(t)
	mod := t.TempDir()
	writeFiles(t, mod, map[string]string{"Kbuild": "obj-m := warn.o\n"})
	v := newCrashVM(t, "kmodvm")
	v.runner.result = module.Result{Build: module.BuildResult{Where: module.BuildHost, OK: true},
		Steps:   []module.Step{{Action: "load", Module: "warn", Iteration: 1, OK: true, Findings: []kmsg.Finding{{Class: kmsg.ClassWarning, Title: "WARNING in warn_init"}}}},
		Verdict: module.VerdictKernelProblem, Title: "WARNING in warn_init"}
	r := v.run(mod, "run", mod)
	if r.code != exitKernelIssue || strings.Contains(r.stdout, "crash:") {
		t.Errorf("a warning kept a crash: exit %d\n%s", r.code, r.stdout)
	}
	if _, err := os.Stat(filepath.Join(v.dir, "crashes")); !os.IsNotExist(err) {
		t.Errorf("crash directory: %v", err)
	}
	r = v.run(mod, "crashes")
	if r.code != 0 || !strings.Contains(r.stdout, "no crashes kept of VM kmodvm") {
		t.Errorf("crashes with none: exit %d\n%s", r.code, r.stdout)
	}
	r = v.run(mod, "crashes", "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"crashes": []`) {
		t.Errorf("crashes --json with none: exit %d\n%s", r.code, r.stdout)
	}
}

// TestCrashRetention: kmodvm.yaml's vm.crash_retention bundles are kept, the newest.
func TestCrashRetention(t *testing.T) {
	v, mod := rustOopsVM(t, "dev", map[string]string{"kmodvm.yaml": "name: dev\nvm:\n  crash_retention: 2\n"})
	var ids []string
	for range 3 {
		r := v.run(mod, "run", "--json", mod)
		var rj runJSON
		if err := json.Unmarshal([]byte(r.stdout), &rj); err != nil || rj.CrashID == "" {
			t.Fatalf("run: %v\n%s", err, r.stdout)
		}
		ids = append(ids, rj.CrashID)
	}
	all, err := crashes.List(filepath.Join(v.dir, "crashes"))
	if err != nil || len(all) != 2 || all[0].ID != ids[2] || all[1].ID != ids[1] {
		t.Errorf("kept %+v (%v), want the newest two of %v", all, err, ids)
	}
}

// TestCrashNotKept: a bundle that cannot be saved is a warning and a note; the run's verdict
// and exit code stand.
func TestCrashNotKept(t *testing.T) {
	v, mod := rustOopsVM(t, "kmodvm", nil)
	if err := os.WriteFile(filepath.Join(v.dir, "crashes"), nil, 0o600); err != nil { // not a directory
		t.Fatal(err)
	}
	r := v.run(mod, "run", "--json", mod)
	var rj runJSON
	if err := json.Unmarshal([]byte(r.stdout), &rj); err != nil {
		t.Fatal(err)
	}
	if r.code != exitKernelIssue || rj.CrashID != "" || !strings.Contains(r.stderr, "kmodvm: warning: the crash was not kept") ||
		len(rj.Notes) != 1 || !strings.HasPrefix(rj.Notes[0], "the crash was not kept: ") {
		t.Errorf("exit %d, crash_id %q, notes %q, stderr %q", r.code, rj.CrashID, rj.Notes, r.stderr)
	}
}

func TestCrashesErrors(t *testing.T) {
	isolate(t)
	mod := t.TempDir()
	v := newCrashVM(t, "kmodvm")
	for _, at := range []time.Time{time.Date(2026, 12, 5, 14, 15, 2, 0, time.UTC), time.Date(2026, 12, 5, 14, 15, 3, 0, time.UTC)} {
		if _, err := crashes.Save(filepath.Join(v.dir, "crashes"), crashes.Bundle{Meta: crashes.Meta{Time: at, Module: "m"}}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"unknown ID", []string{"crashes", "show", "20250101"}, exitUsage,
			[]string{`VM kmodvm has no crash bundle with the ID "20250101"`, "hint: `kmodvm crashes` lists them"}},
		{"ambiguous prefix", []string{"crashes", "show", "20261205-1415"}, exitUsage,
			[]string{`"20261205-1415" is the start of 2 crash bundle IDs (20261205-141503-m, 20261205-141502-m)`, "hint: give more of the ID"}},
		{"no ID", []string{"crashes", "show"}, exitUsage, []string{"accepts 1 arg", "hint: run `kmodvm crashes show --help`"}},
		{"no such VM", []string{"crashes", "-n", "other"}, exitFailure, []string{`there is no VM named "other"`, "hint:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := v.run(mod, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d", r.code, tt.code)
			}
			checkUserMessage(t, r.stderr)
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
		})
	}
	r := v.run(mod, "crashes", "show", "20261205-141502")
	if r.code != 0 || !strings.Contains(r.stdout, "no trace: the kernel log holds no report with a stack") {
		t.Errorf("show of a bundle without traces: exit %d\n%s", r.code, r.stdout)
	}
}

func TestCommandLine(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "kmodvm"},
		{[]string{"run", "-p", "greetings=2", "./rust-hello"}, "kmodvm run -p greetings=2 ./rust-hello"},
		{[]string{"run", "-p", "msg=a b", "/home/me/my mod"}, "kmodvm run -p 'msg=a b' '/home/me/my mod'"},
		{[]string{"test", "--filter", "rust_*", "it's"}, `kmodvm test --filter 'rust_*' 'it'\''s'`},
	} {
		if got := (&app{args: tt.args}).commandLine(); got != tt.want {
			t.Errorf("commandLine(%q) = %s, want %s", tt.args, got, tt.want)
		}
	}
}
