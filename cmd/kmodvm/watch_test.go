package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/treewatch"
	"github.com/kmodvm/kmodvm/provision/treewatch/treewatchtest"
)

// These tests run `kmodvm watch` as main does (execute, exit codes included) on a fake VM
// (app.openVM) whose runner starts a run and waits for the test to say how it ends, a real
// inotify watch of a temp module directory, and a manual clock (app.watchOptions): a test
// waits until the watcher has counted a change, then ends the quiet period by firing the
// clock. Nothing waits for time. Files are saved as editors save them (a temporary file
// renamed over the target): one event a save (see provision/treewatch's tests).

// gatedRunner is a fake VM's runner: each Run reports its options on started and returns
// the result the test sends on finish, or an interruption when its context ends first.
type gatedRunner struct {
	started chan module.Options
	finish  chan module.Result
}

func (r *gatedRunner) Run(ctx context.Context, opt module.Options) (*module.Result, error) {
	r.started <- opt
	select {
	case res := <-r.finish:
		res.Module, res.Modules = opt.Source.Dir, opt.Source.Modules
		return &res, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("load of hello: interrupted: %w", ctx.Err())
	}
}

func (r *gatedRunner) Close() error { return nil }

// watching is a `kmodvm watch` running in a goroutine.
type watching struct {
	t       *testing.T
	dir     string // the module directory
	clock   *treewatchtest.Clock
	events  treewatchtest.Events
	runner  *gatedRunner
	stdout  *lockedBuffer
	stderr  *lockedBuffer
	cancel  context.CancelFunc
	done    chan int
	stopped bool
}

var okResult = module.Result{
	Sync:    module.SyncResult{Changed: 1, Summary: "1 changed, 0 deleted, 0.1 s"},
	Build:   module.BuildResult{Where: "host", OK: true, Duration: 2100 * time.Millisecond},
	Steps:   []module.Step{{Action: "load", Module: "hello", Iteration: 1, OK: true, Duration: 300 * time.Millisecond}, {Action: "unload", Module: "hello", Iteration: 1, OK: true, Duration: 200 * time.Millisecond}},
	Verdict: module.VerdictOK, Title: "ok",
}

// startWatch runs `kmodvm watch flags... m` on the module m (hello.c, Kbuild).
func startWatch(t *testing.T, flags ...string) *watching {
	t.Helper()
	isolate(t)
	top := t.TempDir()
	writeFiles(t, top, map[string]string{"m/Kbuild": helloKbuild, "m/hello.c": "int x;\n"})
	t.Chdir(top)
	w := &watching{t: t, dir: filepath.Join(top, "m"),
		clock:  treewatchtest.New(time.Date(2026, 5, 4, 14, 2, 11, 0, time.UTC)),
		events: treewatchtest.NewEvents(),
		runner: &gatedRunner{started: make(chan module.Options, 16), finish: make(chan module.Result)},
		stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan int, 1)}
	root, a := newRootCmd(strings.NewReader(""), w.stdout, w.stderr)
	newFakeVM(a, w.runner)
	a.watchOptions = func(o *treewatch.Options) {
		o.Clock = w.clock
		o.Seen = w.events.Seen
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	args := append(append([]string{"watch", "--uri", nowhereURI(t)}, flags...), "m")
	go func() { w.done <- execute(ctx, root, a, args, w.stderr) }()
	t.Cleanup(func() {
		if !w.stopped {
			w.stop()
		}
		t.Logf("stderr:\n%s", w.stderr)
	})
	return w
}

// run waits for the next run to start and ends it with res; it returns the run's options.
func (w *watching) run(res module.Result) module.Options {
	w.t.Helper()
	var opt module.Options
	select {
	case opt = <-w.runner.started:
	case code := <-w.done:
		w.t.Fatalf("kmodvm watch exited %d; stderr:\n%s", code, w.stderr)
	case <-time.After(10 * time.Second):
		w.t.Fatalf("no run started within 10 s; stdout:\n%s", w.stdout)
	}
	w.runner.finish <- res
	return opt
}

// started waits for the next run to start and leaves it running.
func (w *watching) started() {
	w.t.Helper()
	select {
	case <-w.runner.started:
	case <-time.After(10 * time.Second):
		w.t.Fatal("no run started within 10 s")
	}
}

// save saves name in the module directory as an editor does, and waits until the watcher
// counted it (it fails if the watcher counted another change first).
func (w *watching) save(name string) {
	w.t.Helper()
	w.saveAs(name, "int y;\n")
}

func (w *watching) saveAs(name, content string) {
	w.t.Helper()
	treewatchtest.Save(w.t, w.dir, name, content)
	w.events.WaitCounted(w.t, name)
}

// quiet ends the quiet period after the changes saved.
func (w *watching) quiet() {
	w.t.Helper()
	if !w.clock.Fire() {
		w.t.Fatal("no quiet period was running: no change counted")
	}
}

// records waits until stdout holds n JSON lines and returns them.
func (w *watching) records(n int) []watchJSON {
	w.t.Helper()
	var recs []watchJSON
	waitFor(w.t, func() bool { return strings.Count(w.stdout.String(), "\n") >= n },
		func() string { return fmt.Sprintf("%d lines on stdout:\n%s", n, w.stdout) })
	for line := range strings.Lines(w.stdout.String()) {
		var r watchJSON
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			w.t.Fatalf("stdout line is no JSON object: %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// stop cancels the watch as Ctrl-C does and returns its exit code.
func (w *watching) stop() int {
	w.t.Helper()
	w.stopped = true
	w.cancel()
	select {
	case code := <-w.done:
		return code
	case <-time.After(10 * time.Second):
		w.t.Fatal("kmodvm watch did not end within 10 s of Ctrl-C")
		return -1
	}
}

// TestWatchIterations: each batch of changes is one run, with exactly the files changed.
func TestWatchIterations(t *testing.T) {
	tests := []struct {
		name string
		// do changes the module directory while run #1 is going on (during) or after it
		// ended (after); then the runs after #1 are checked against want.
		during, after func(w *watching)
		want          [][]string // the changed files of runs #2, #3, ...
	}{
		{name: "two saves, two runs", after: func(w *watching) {
			w.save("hello.c")
			w.quiet()
			w.run(okResult)
			w.save("hello.h")
			w.quiet()
		}, want: [][]string{{"hello.c"}, {"hello.h"}}},
		{name: "a burst is one run", after: func(w *watching) {
			w.save("hello.c")
			w.save("util.c")
			w.save("hello.c")
			w.quiet()
			w.run(okResult)
			w.save("hello.h") // and nothing was left over for another run
			w.quiet()
		}, want: [][]string{{"hello.c", "util.c"}, {"hello.h"}}},
		{name: "editors' temporary files and build outputs are no change", after: func(w *watching) {
			writeFiles(w.t, w.dir, map[string]string{"4913": "", ".hello.c.swp": "swap", "hello.c~": "backup",
				".#hello.c": "", "#hello.c#": "", "hello.o": "obj", ".hello.o.cmd": "", "hello.ko": "ko", "Module.symvers": ""})
			w.save("hello.h") // the first change that counts
			w.quiet()
		}, want: [][]string{{"hello.h"}}},
		{name: "changes during a run are exactly one more run", during: func(w *watching) {
			w.save("hello.c")
			w.quiet()
			w.save("util.c")
			w.quiet()
		}, after: func(w *watching) {
			w.run(okResult) // the one more
			w.save("hello.h")
			w.quiet()
		}, want: [][]string{{"hello.c", "util.c"}, {"hello.h"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startWatch(t, "--json")
			w.started()
			if tt.during != nil {
				tt.during(w)
			}
			w.runner.finish <- okResult
			w.records(1)
			tt.after(w)
			w.run(okResult) // the last one
			recs := w.records(1 + len(tt.want))
			if code := w.stop(); code != exitInterrupted {
				t.Errorf("exit %d after Ctrl-C, want %d", code, exitInterrupted)
			}
			if len(recs) != 1+len(tt.want) {
				t.Fatalf("%d runs, want %d:\n%s", len(recs), 1+len(tt.want), w.stdout)
			}
			if recs[0].Iteration != 1 || len(recs[0].Changed) != 0 || recs[0].Changed == nil {
				t.Errorf("run #1: iteration %d, changed %v; want 1 and []", recs[0].Iteration, recs[0].Changed)
			}
			for i, want := range tt.want {
				r := recs[i+1]
				if r.Iteration != i+2 || !slices.Equal(r.Changed, want) {
					t.Errorf("run #%d: iteration %d changed %v, want %v", i+2, r.Iteration, r.Changed, want)
				}
			}
			for _, r := range recs {
				if r.Schema != schemaWatch || r.Verdict != module.VerdictOK || r.ExitCode != exitOK || r.Run == nil ||
					r.Run.Schema != schemaRun || r.Run.KernelRelease != "6.12.1-kmodvm" || r.Run.Module != w.dir {
					t.Errorf("run #%d record: %+v", r.Iteration, r)
				}
			}
		})
	}
}

// TestWatchOutput: one line per run, the failed run's report before its line, and a run
// kmodvm could not do at all is a line too (watching goes on).
func TestWatchOutput(t *testing.T) {
	w := startWatch(t, "-p", "greetings=2", "--reload", "2")
	opt := w.run(okResult)
	if !slices.Equal(opt.Params, []string{"greetings=2"}) || opt.Reload != 2 || opt.Where != module.BuildHost || opt.Tests {
		t.Errorf("runner options %+v, want -p greetings=2, --reload 2, a host build", opt)
	}
	w.save("hello.c")
	w.quiet()
	oops := "BUG: kernel NULL pointer dereference, address: 0000000000000000"
	w.run(module.Result{
		Sync:  module.SyncResult{Changed: 1, Summary: "1 changed, 0 deleted, 0.1 s"},
		Build: module.BuildResult{Where: "host", OK: true, Duration: 1900 * time.Millisecond},
		Steps: []module.Step{{Action: "load", Module: "hello", Iteration: 1, OK: false, Error: "the guest crashed", Crashed: true,
			Duration: 1500 * time.Millisecond, Log: []string{"[    5.100000] <alert> " + oops},
			Findings: []kmsg.Finding{{Class: kmsg.ClassOops, Title: oops}}}},
		Restart: true, Verdict: module.VerdictKernelProblem, Title: oops,
	})
	// The Kbuild now names no module: the run is an error line, and watching goes on.
	w.saveAs("Kbuild", "# nothing\n")
	w.quiet()
	waitFor(t, func() bool { return strings.Contains(w.stdout.String(), "#3 ") }, func() string { return "run #3:\n" + w.stdout.String() })
	want := "[14:02:11] #1 ok — hello (sync 1 changed, build 2.1 s, load 0.3 s)\n" +
		"sync:    1 changed, 0 deleted, 0.1 s\n" +
		"build:   host, ok (1.9 s)\n" +
		"load hello (#1): FAILED: the guest crashed (1.50 s)\n" +
		"  [    5.100000] <alert> " + oops + "\n" +
		"  !! oops: " + oops + "\n" +
		"guest:   restarted after the crash; it is ready for the next run\n" +
		"[14:02:11] #2 kernel-problem — " + oops + " (sync 1 changed, build 1.9 s, load 1.5 s; guest restarted)\n" +
		"[14:02:11] #3 error — the Kbuild/Makefile in " + w.dir + " names no module (no `obj-m := name.o` line); hint: add one\n"
	if got := w.stdout.String(); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	if code := w.stop(); code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
}

// TestWatchTests: --tests makes each run `kmodvm test`'s, with the filter.
func TestWatchTests(t *testing.T) {
	w := startWatch(t, "--tests", "--filter", "hello.*", "--json")
	opt := w.run(module.Result{Build: module.BuildResult{OK: true}, Verdict: module.VerdictTestsFailed, Title: "1 of 2 KUnit tests failed: hello.adds"})
	if !opt.Tests || opt.Filter != "hello.*" {
		t.Errorf("runner options %+v, want Tests and the filter", opt)
	}
	r := w.records(1)[0]
	if r.Verdict != module.VerdictTestsFailed || r.ExitCode != exitTestsFailed || r.Run.Schema != schemaTest {
		t.Errorf("record %+v, want tests-failed, exit %d, schema %s", r, exitTestsFailed, schemaTest)
	}
}

// TestWatchJUnit: --junit holds the last run's results, rewritten after every run.
func TestWatchJUnit(t *testing.T) {
	w := startWatch(t, "--tests", "--json", "--junit", "kunit.xml")
	report := filepath.Join(filepath.Dir(w.dir), "kunit.xml")
	w.run(module.Result{Build: module.BuildResult{OK: true}, Verdict: module.VerdictTestsFailed, Title: "1 of 2 KUnit tests failed: hello.adds"})
	w.records(1)
	first, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(first), "<testsuites") || !strings.Contains(string(first), "1 of 2 KUnit tests failed: hello.adds") {
		t.Fatalf("after run 1 the JUnit report is %q, %v; want run 1's failure", first, err)
	}
	w.save("hello.c")
	w.quiet()
	w.run(okResult)
	w.records(2)
	second, err := os.ReadFile(report)
	if err != nil || !strings.Contains(string(second), "<testsuites") || strings.Contains(string(second), "hello.adds") {
		t.Errorf("after run 2 the JUnit report is %q, %v; want run 2's results alone", second, err)
	}
}

// TestWatchInterrupted: Ctrl-C while waiting for a change or during a run exits 130, says
// so, and leaves no goroutine of the watch behind.
func TestWatchInterrupted(t *testing.T) {
	for _, during := range []bool{false, true} {
		t.Run(fmt.Sprintf("during a run %v", during), func(t *testing.T) {
			w := startWatch(t)
			if during {
				w.started()
			} else {
				w.run(okResult)
				waitFor(t, func() bool { return strings.Contains(w.stderr.String(), "waiting for a change") },
					func() string { return "the watch to wait:\n" + w.stderr.String() })
			}
			if code := w.stop(); code != exitInterrupted {
				t.Errorf("exit %d, want %d", code, exitInterrupted)
			}
			if !strings.Contains(w.stderr.String(), "kmodvm: interrupted") {
				t.Errorf("stderr does not say interrupted:\n%s", w.stderr)
			}
			// A goroutine that has just said it is done may take a moment to be gone.
			var stacks string
			waitFor(t, func() bool {
				buf := make([]byte, 1<<20)
				stacks = string(buf[:runtime.Stack(buf, true)])
				return !strings.Contains(stacks, "treewatch.") && !strings.Contains(stacks, "fsnotify.") && !strings.Contains(stacks, "(*app).watch")
			}, func() string { return "the watch's goroutines to end:\n" + stacks })
		})
	}
}

// TestWatchUsage: what is wrong with the command line is said before anything is watched.
func TestWatchUsage(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"m/Kbuild": helloKbuild})
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"watch", "nope"}, "module directory nope does not exist"},
		{[]string{"watch", "m", "--build", "bogus"}, `--build "bogus" is not one of auto, guest, host`},
		{[]string{"watch", "m", "--reload", "-1"}, "reload -1"},
		{[]string{"watch", "m", "--keep"}, "unknown flag: --keep"},
	}
	for _, tt := range tests {
		r := runIn(t, dir, tt.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "hint:") {
			t.Errorf("kmodvm %s: exit %d, stderr %q; want exit %d and %q with a hint", strings.Join(tt.args, " "), r.code, r.stderr, exitUsage, tt.want)
		}
	}
}

// TestWatchFirstRunFails: when kmodvm cannot run the module at all the first time (no VM),
// watch exits as run does instead of watching in vain.
func TestWatchFirstRunFails(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"m/Kbuild": helloKbuild})
	r := runIn(t, dir, "watch", "m", "--uri", nowhereURI(t))
	if r.code != exitFailure || !strings.Contains(r.stderr, "libvirtd is not running") || !strings.Contains(r.stderr, "hint:") {
		t.Errorf("exit %d, stderr %q; want %d and libvirtd's hint", r.code, r.stderr, exitFailure)
	}
	if r.stdout != "" {
		t.Errorf("stdout: %q", r.stdout)
	}
}
