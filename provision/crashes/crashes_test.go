package crashes

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// rustPanicSteps is a load whose kernel log is ktrace's Rust panic fixture, formatted as the
// runner formats Step.Log (with levels), and the unload before it.
func rustPanicSteps(t *testing.T) []module.Step {
	t.Helper()
	data, err := os.ReadFile("../ktrace/testdata/traces/rust-panic.log")
	if err != nil {
		t.Fatal(err)
	}
	var log []string
	for i, r := range kmsg.ParseLog(string(data)) {
		r.Level = []int{4, 0, 6}[i%3]
		log = append(log, r.Format(true))
	}
	return []module.Step{
		{Action: "load", Module: "hello", Iteration: 1, OK: true, Log: []string{"[    1.000000] <info> hello: hi"}},
		{Action: "load", Module: "rust_oops", Iteration: 1, Log: log, Error: "insmod: Segmentation fault",
			Findings: []kmsg.Finding{{Class: kmsg.ClassRustPanic, Title: "Rust panic at rust_oops.rs:19:9"}}},
	}
}

func TestLogRecordsGiveTheTraces(t *testing.T) {
	traces := ktrace.Parse(LogRecords(rustPanicSteps(t)))
	want, err := os.ReadFile("../ktrace/testdata/traces/rust-panic.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatTraces(traces); got != string(want) {
		t.Errorf("traces from Step.Log lines:\n%s\nwant (the trace of the raw log):\n%s", got, want)
	}
	if recs := LogRecords(rustPanicSteps(t)); recs[0].Level != 6 || recs[0].Text != "hello: hi" || recs[1].Level != 4 {
		t.Errorf("records lost their level or kept the <level> tag: %+v", recs[:2])
	}
}

// testBundle is a bundle of the Rust panic at a fixed time, with one .ko.
func testBundle(t *testing.T, at time.Time) Bundle {
	t.Helper()
	steps := rustPanicSteps(t)
	ko := filepath.Join(t.TempDir(), "rust_oops.ko")
	if err := os.WriteFile(ko, []byte("\x7fELF module"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Bundle{
		Meta: Meta{Time: at, VM: "dev", Command: "kmodvm run ./rust_oops", ModuleDir: "/home/me/rust_oops",
			Modules: []string{"rust_oops"}, Step: StepName(steps[1]), Module: "rust_oops", Class: "rust-panic",
			Verdict: module.VerdictKernelProblem, Title: "Rust panic at rust_oops.rs:19:9", GuestRestarted: true,
			KernelRelease: "7.2.0-kmodvm-1a2b3c4d", ConfigHash: "c0ffee", SourceRevision: "v1.0-3-gabcdef0-dirty"},
		Console: []byte("[   40.129931] rust_kernel: panicked at /root/mod/rust_oops.rs:19:9:\n"),
		Kmsg:    KmsgLines(steps),
		Traces:  ktrace.Parse(LogRecords(steps)),
		Kos:     []string{ko},
	}
}

var crashTime = time.Date(2026, 12, 5, 14, 15, 2, 0, time.UTC)

// TestSaveLayout: a bundle holds the files README describes; meta.json, kmsg.txt and
// trace.txt are golden (go test -update rewrites them).
func TestSaveLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "crashes")
	id, err := Save(dir, testBundle(t, crashTime))
	if err != nil {
		t.Fatal(err)
	}
	if id != "20261205-141502-rust_oops" {
		t.Errorf("ID %q", id)
	}
	b := filepath.Join(dir, id)
	for _, name := range []string{MetaFile, KmsgFile, TraceText} {
		data, err := os.ReadFile(filepath.Join(b, name))
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, filepath.Join("testdata", "bundle", name), data)
	}
	ents, _ := os.ReadDir(b)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{ConsoleFile, KmsgFile, MetaFile, "rust_oops.ko", TraceJSON, TraceText}; !slices.Equal(names, want) {
		t.Errorf("bundle files %v, want %v", names, want)
	}
	if ko, _ := os.ReadFile(filepath.Join(b, "rust_oops.ko")); string(ko) != "\x7fELF module" {
		t.Errorf("the .ko was not copied: %q", ko)
	}
	var traces []ktrace.Trace
	data, _ := os.ReadFile(filepath.Join(b, TraceJSON))
	if err := json.Unmarshal(data, &traces); err != nil || len(traces) != 1 || traces[0].Kind != "rust-panic" {
		t.Errorf("trace.json: %v %s", err, data)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("crash directory mode: %v %v", fi.Mode(), err)
	}
}

func TestSaveKoNotKept(t *testing.T) {
	b := testBundle(t, crashTime)
	link := filepath.Join(t.TempDir(), "evil.ko")
	if err := os.Symlink("/etc/passwd", link); err != nil {
		t.Fatal(err)
	}
	b.Kos = append(b.Kos, link, filepath.Join(t.TempDir(), "gone.ko"))
	b.Meta.KoNote = "some reason"
	dir := t.TempDir()
	id, err := Save(dir, b)
	if err != nil {
		t.Fatal(err)
	}
	l, err := Load(dir, id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.Kos, []string{"rust_oops.ko"}) {
		t.Errorf("kos %v, want only the regular file", l.Kos)
	}
	for _, want := range []string{"some reason", "evil.ko not kept", "gone.ko not kept"} {
		if !strings.Contains(l.KoNote, want) {
			t.Errorf("ko_note %q lacks %q", l.KoNote, want)
		}
	}
	if _, err := os.Lstat(filepath.Join(l.Dir, "evil.ko")); err == nil {
		t.Error("the symlink was kept")
	}
}

// TestSaveCollision: bundles of one module in one second get numbered IDs; none is lost.
func TestSaveCollision(t *testing.T) {
	dir := t.TempDir()
	var ids []string
	for range 3 {
		id, err := Save(dir, testBundle(t, crashTime))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	want := []string{"20261205-141502-rust_oops", "20261205-141502-rust_oops-2", "20261205-141502-rust_oops-3"}
	if !slices.Equal(ids, want) {
		t.Errorf("IDs %v, want %v", ids, want)
	}
	all, err := List(dir)
	if err != nil || len(all) != 3 || all[0].ID != want[2] {
		t.Errorf("List: %v %+v", err, all)
	}
	for _, m := range all {
		if m.Schema != Schema {
			t.Errorf("%s: schema %q", m.ID, m.Schema)
		}
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"rust_oops": "rust_oops", "C-Hello": "c-hello", "../x y": "___x_y", "": "crash",
		strings.Repeat("a", 60): strings.Repeat("a", 40),
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

// saveAt saves a minimal bundle of module at t0 plus i seconds.
func saveAt(t *testing.T, dir, mod string, i int) string {
	t.Helper()
	id, err := Save(dir, Bundle{Meta: Meta{Time: crashTime.Add(time.Duration(i) * time.Second), Module: mod}})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestPrune(t *testing.T) {
	tests := []struct {
		name  string
		saves int
		keep  int
		want  int
	}{
		{"fewer than kept", 3, 20, 3},
		{"the newest kept", 25, 20, 20},
		{"keep none", 4, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var ids []string
			for i := range tt.saves {
				ids = append(ids, saveAt(t, dir, "m", i))
			}
			if err := os.Mkdir(filepath.Join(dir, tmpPrefix+"killed"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := Prune(dir, tt.keep); err != nil {
				t.Fatal(err)
			}
			all, err := List(dir)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range all {
				got = append(got, m.ID)
			}
			want := slices.Clone(ids[tt.saves-tt.want:])
			slices.Reverse(want)
			if !slices.Equal(got, want) {
				t.Errorf("left %v, want %v", got, want)
			}
			if _, err := os.Stat(filepath.Join(dir, tmpPrefix+"killed")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a half-written bundle was left: %v", err)
			}
		})
	}
	if err := Prune(filepath.Join(t.TempDir(), "none"), 1); err != nil {
		t.Errorf("prune of a VM without crashes: %v", err)
	}
}

// TestPruneOrder: collisions are numbered, and "-10" is newer than "-2".
func TestPruneOrder(t *testing.T) {
	ids := []string{"20261205-141502-m-10", "20261205-141503-a", "20261205-141502-m-2", "20261205-141502-m", "20261204-235959-z"}
	sortIDs(ids)
	want := []string{"20261204-235959-z", "20261205-141502-m", "20261205-141502-m-2", "20261205-141502-m-10", "20261205-141503-a"}
	if !slices.Equal(ids, want) {
		t.Errorf("sorted %v, want %v", ids, want)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	a := saveAt(t, dir, "alpha", 0)
	saveAt(t, dir, "beta", 60)
	saveAt(t, dir, "beta", 120)
	if err := os.Mkdir(filepath.Join(dir, "not-a-bundle"), 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ref     string
		want    string
		notFind bool
		ambig   int
	}{
		{ref: a, want: a},
		{ref: "20261205-141502", want: a},
		{ref: "20261205-14", ambig: 3},
		{ref: "2026", ambig: 3},
		{ref: "20261205-141702-b", want: "20261205-141702-beta"},
		{ref: "nope", notFind: true},
		{ref: "", ambig: 0, notFind: true},
		{ref: "not-a-bundle", notFind: true},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			l, err := Load(dir, tt.ref)
			var ae *AmbiguousError
			switch {
			case tt.notFind:
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("err %v, want ErrNotFound", err)
				}
			case tt.ambig > 0:
				if !errors.As(err, &ae) || len(ae.IDs) != tt.ambig {
					t.Errorf("err %v, want ambiguous among %d", err, tt.ambig)
				}
			case err != nil:
				t.Fatal(err)
			case l.ID != tt.want || l.Dir != filepath.Join(dir, tt.want) || l.Traces == nil:
				t.Errorf("loaded %s at %s (traces %v), want %s", l.ID, l.Dir, l.Traces, tt.want)
			}
		})
	}
}

func TestCrashStep(t *testing.T) {
	ok := module.Step{Action: "load", Module: "a", OK: true}
	warn := module.Step{Action: "load", Module: "b", Findings: []kmsg.Finding{{Class: kmsg.ClassWarning}, {Class: kmsg.ClassTaint}}}
	oops := module.Step{Action: "unload", Module: "c", Findings: []kmsg.Finding{{Class: kmsg.ClassWarning}, {Class: kmsg.ClassOops}}}
	died := module.Step{Action: "kunit-run", Module: "d", Crashed: true, Findings: []kmsg.Finding{{Class: kmsg.ClassSoftLockup}}}
	tests := []struct {
		name      string
		steps     []module.Step
		wantStep  string
		wantClass string
	}{
		{"ok", []module.Step{ok}, "", ""},
		{"a warning is no crash", []module.Step{ok, warn}, "", ""},
		{"an oops after a warning", []module.Step{ok, warn, oops}, "c", "oops"},
		{"the guest died", []module.Step{ok, died, oops}, "d", "soft-lockup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, class, found := CrashStep(&module.Result{Steps: tt.steps})
			if found != (tt.wantStep != "") || st.Module != tt.wantStep || class != tt.wantClass {
				t.Errorf("CrashStep = %q %q %v, want %q %q", st.Module, class, found, tt.wantStep, tt.wantClass)
			}
		})
	}
}

func TestConsoleSince(t *testing.T) {
	lines := func(from, to int) string {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "line %03d\n", i)
		}
		return b.String()
	}
	write := func(t *testing.T, p, data string) {
		t.Helper()
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(data); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	tests := []struct {
		name      string
		before    string // the log when the run starts
		during    string // written by the run before a restart
		rotate    bool   // the restart moved the log to console.log.1
		after     string // written after it
		max       int
		want      string
		truncated bool
	}{
		{name: "since the mark", before: lines(0, 4), during: lines(4, 10), max: 1 << 20, want: lines(4, 10)},
		{name: "restarted: the old log's rest first", before: lines(0, 7), during: lines(7, 10), rotate: true, after: lines(10, 12), max: 1 << 20, want: lines(7, 12)},
		{name: "restarted, the new log already longer than the mark", before: lines(0, 2), during: lines(2, 3), rotate: true, after: lines(3, 20), max: 1 << 20, want: lines(2, 20)},
		{name: "no log at the start", during: lines(0, 3), max: 1 << 20, want: lines(0, 3)},
		{name: "the tail, from a whole line", during: lines(0, 100), max: 95, want: lines(90, 100), truncated: true},
		{name: "no log", max: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "console.log")
			if tt.before != "" {
				write(t, p, tt.before)
			}
			mark := MarkConsole(p)
			if tt.during != "" {
				write(t, p, tt.during)
			}
			if tt.rotate {
				if err := os.Rename(p, p+".1"); err != nil {
					t.Fatal(err)
				}
				write(t, p, tt.after)
			}
			got, trunc, err := ConsoleSince(p, mark, tt.max)
			if err != nil || string(got) != tt.want || trunc != tt.truncated {
				t.Errorf("ConsoleSince = %q, %v, %v; want %q, %v", got, trunc, err, tt.want, tt.truncated)
			}
		})
	}
}

func TestLoadedKos(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"rust-oops.ko", "other.ko", "rust_oops.o", "Makefile"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "linked.ko")); err != nil {
		t.Fatal(err)
	}
	steps := []module.Step{{Action: "load", Module: "rust_oops"}, {Action: "load", Module: "linked"}, {Action: "unload", Module: "other"}}
	got, err := LoadedKos(dir, steps)
	if err != nil || !slices.Equal(got, []string{filepath.Join(dir, "rust-oops.ko")}) {
		t.Errorf("LoadedKos = %v, %v", got, err)
	}
	if _, err := LoadedKos(filepath.Join(dir, "none"), steps); err == nil {
		t.Error("no error for a missing build directory")
	}
}

func TestSourceRevision(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git")
	}
	plain := t.TempDir()
	if got := SourceRevision(t.Context(), plain); got != "" {
		t.Errorf("outside a work tree: %q, want \"\"", got)
	}
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q")
	if err := os.WriteFile(filepath.Join(repo, "Kbuild"), []byte("obj-m := m.o\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("add", "Kbuild")
	git("commit", "-q", "-m", "first")
	clean := SourceRevision(t.Context(), repo)
	if len(clean) < 7 || strings.Contains(clean, "dirty") {
		t.Errorf("clean work tree: %q", clean)
	}
	if err := os.WriteFile(filepath.Join(repo, "Kbuild"), []byte("obj-m := n.o\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := SourceRevision(t.Context(), repo); got != clean+"-dirty" {
		t.Errorf("changed work tree: %q, want %q", got, clean+"-dirty")
	}
}
