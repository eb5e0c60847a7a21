package module

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/ktap"
)

// ktapSuite is what KUnit logs for suite "hello" at insmod with autorun: a pass, a failure
// naming hello.c, a skip. The fake insmod.sh logs it line by line with klog.
const ktapSuite = `KTAP version 1
1..1
    KTAP version 1
    # Subtest: hello
    # module: hello
    1..3
    ok 1 hello_adds
    # hello_fails: EXPECTATION FAILED at hello.c:1
    Expected 1 == 2, but
        2 == 2 (0x2)
    not ok 2 hello_fails
    ok 3 hello_later # SKIP needs a device
# hello: pass:1 fail:1 skip:1 total:3
# Totals: pass:1 fail:1 skip:1 total:3
not ok 1 hello`

// klogLines is shell code that logs each line of text as its own record, as printk does.
func klogLines(text string) string {
	var b strings.Builder
	for _, l := range strings.Split(text, "\n") {
		b.WriteString("klog 6 '" + strings.ReplaceAll(l, "'", `'\''`) + "'\n")
	}
	return b.String()
}

// registerSuite is shell code for a fake insmod that registers a KUnit suite.
func registerSuite(name string) string {
	return `mkdir -p "$G/kunit/` + name + `"` + "\n"
}

func TestRunKUnit(t *testing.T) {
	cases := []struct {
		name    string
		tests   bool   // kmodvm test, not run
		filter  string // --filter
		kunit   bool   // the kernel has KUnit (a debugfs dir)
		insmod  string
		verdict string
		title   string
		counts  TestCounts
		note    string // part of a note
		glob    string // what the load set KUnit's filter to
	}{
		{name: "autorun: a failing test fails run", kunit: true, insmod: registerSuite("hello") + klogLines(ktapSuite),
			verdict: VerdictTestsFailed, title: "1 of 3 KUnit tests failed: hello.hello_fails", counts: TestCounts{Passed: 1, Failed: 1, Skipped: 1}, glob: "*.*"},
		{name: "autorun: and test", tests: true, filter: "hello.*", kunit: true, insmod: registerSuite("hello") + klogLines(ktapSuite),
			verdict: VerdictTestsFailed, title: "hello.hello_fails", counts: TestCounts{Passed: 1, Failed: 1, Skipped: 1}, glob: "hello.*"},
		{name: "registered, autorun off: run says so", kunit: true, insmod: registerSuite("hello"),
			verdict: VerdictOK, note: "`kmodvm test ", glob: "*.*"},
		{name: "no suites: run is ok", kunit: true, verdict: VerdictOK, glob: "*.*"},
		{name: "no suites: test is not", tests: true, kunit: true, verdict: VerdictTestsFailed, title: "registers no KUnit suite", glob: "*.*"},
		{name: "no KUnit in the kernel", tests: true, verdict: VerdictTestsFailed, title: "has no KUnit"},
		{name: "all pass", tests: true, kunit: true, insmod: registerSuite("hello") + klogLines(strings.NewReplacer("not ok 2 hello_fails", "ok 2 hello_fails", "not ok 1 hello", "ok 1 hello").Replace(ktapSuite)),
			verdict: VerdictOK, title: "2 KUnit tests passed, 1 skipped", counts: TestCounts{Passed: 2, Skipped: 1}, glob: "*.*"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGuest(t)
			if c.kunit {
				if err := os.Mkdir(filepath.Join(g.dir, "kunit"), 0o755); err != nil {
					t.Fatal(err)
				}
				g.write("filter_glob", "(null)\n", 0o644)
			}
			g.write("insmod.sh", c.insmod, 0o644)
			r := g.runner(nil)
			defer r.Close()
			src := moduleSource(t)
			res, err := r.Run(testCtx(t), Options{Source: src, Where: BuildGuest, Tests: c.tests, Filter: c.filter})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Verdict != c.verdict || !strings.Contains(res.Title, c.title) {
				t.Fatalf("verdict %q %q, want %q with %q; steps %+v", res.Verdict, res.Title, c.verdict, c.title, res.Steps)
			}
			if res.Tests != c.counts {
				t.Errorf("counts %+v, want %+v", res.Tests, c.counts)
			}
			if got := strings.Join(res.Notes, "\n"); (c.note == "") != (got == "") || !strings.Contains(got, c.note) {
				t.Errorf("notes %q, want one with %q", got, c.note)
			}
			if got := g.read("filter_glob"); c.glob != "" && got != c.glob {
				t.Errorf("KUnit's filter %q, want %q (no newline)", got, c.glob)
			}
			if c.counts.Failed > 0 {
				fails := res.KUnit[0].Tests[1]
				want := "EXPECTATION FAILED at " + filepath.Join(src.Dir, "hello.c") + ":1"
				if !strings.Contains(strings.Join(fails.Diagnostics, "\n"), want) {
					t.Errorf("the failure's diagnostics %q do not point at the host file (%q)", fails.Diagnostics, want)
				}
			}
		})
	}
}

// A kernel without autorun: test runs each registered suite through its debugfs run file,
// as a step of its own; the fake's run file is a FIFO whose reader logs the suite's KTAP.
func TestTestRunsRegisteredSuites(t *testing.T) {
	g := newFakeGuest(t)
	if err := os.Mkdir(filepath.Join(g.dir, "kunit"), 0o755); err != nil {
		t.Fatal(err)
	}
	g.write("filter_glob", "(null)\n", 0o644)
	suite := strings.Join(strings.Split(ktapSuite, "\n")[2:12], "\n") // the suite alone, as debugfs runs it
	suite = strings.ReplaceAll(suite, "not ok 2 hello_fails", "ok 2 hello_fails")
	// The fake kernel runs the suite in the background when run is written, and opens
	// results (which guest.sh reads to its end) once the suite's records are in the log.
	g.write("insmod.sh", registerSuite("hello")+`mkfifo "$G/kunit/hello/run" "$G/kunit/hello/results"
( read -r x < "$G/kunit/hello/run"; `+strings.ReplaceAll(klogLines(suite+"\nok 1 hello"), "\n", "; ")+` : > "$G/kunit/hello/results" ) >/dev/null 2>&1 &
`, 0o644)
	r := g.runner(nil)
	defer r.Close()
	res, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest, Tests: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var actions []string
	for _, s := range res.Steps {
		actions = append(actions, s.Action+":"+s.Suite)
	}
	if got := strings.Join(actions, " "); got != "load: kunit-run:hello unload:" {
		t.Errorf("steps %s, want load, kunit-run of hello, unload", got)
	}
	if res.Verdict != VerdictOK || res.Tests != (TestCounts{Passed: 2, Skipped: 1}) {
		t.Errorf("verdict %q %q, counts %+v; suites %+v", res.Verdict, res.Title, res.Tests, res.KUnit)
	}
}

// A test that panics the guest: the load step crashed; its console records have the suite
// cut short, and the test that never reported is named from the trace.
func TestKUnitCrashNamesTheTest(t *testing.T) {
	g := newFakeGuest(t)
	if err := os.Mkdir(filepath.Join(g.dir, "kunit"), 0o755); err != nil {
		t.Fatal(err)
	}
	console := `[    2.000000]     KTAP version 1
[    2.000001]     # Subtest: hello
[    2.000002]     1..3
[    2.100000]     ok 1 hello_adds
[    2.200000] Kernel panic - not syncing: hello: boom
[    2.200001] Call Trace:
[    2.200002]  <TASK>
[    2.200003]  panic+0x10/0x20
[    2.200004]  hello_boom+0x1/0x2 [hello]
[    2.200005]  kunit_try_run_case+0x5/0x9
[    2.200006]  kunit_generic_run_threadfn_adapter+0x1/0x2
[    2.200007] ---[ end Kernel panic - not syncing: hello: boom ]---
`
	g.write("insmod.sh", registerSuite("hello")+`printf '%s' '`+console+`' >> "$G/console.log"; : > "$G/dead"; sleep 60`, 0o644)
	r := g.runner(nil)
	defer r.Close()
	res, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest, Tests: true})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Verdict != VerdictKernelProblem || !strings.Contains(res.Title, "during the KUnit test hello.hello_boom") {
		t.Errorf("verdict %q %q, want a kernel problem during hello.hello_boom", res.Verdict, res.Title)
	}
	if !res.Restart || g.restarts != 1 {
		t.Errorf("restarted %v (%d times), want once", res.Restart, g.restarts)
	}
	if res.Tests != (TestCounts{Passed: 1, Crashed: 2}) {
		t.Errorf("counts %+v, want 1 passed and 2 crashed; suites %+v", res.Tests, res.KUnit)
	}
}

func TestCountAndNameFailing(t *testing.T) {
	suites := []SuiteResult{{Module: "m", Suite: ktap.Suite{Name: "s", Tests: []ktap.Test{
		{Name: "a", Status: ktap.Pass},
		{Name: "p", Status: ktap.Fail, Subtests: []ktap.Test{{Name: "1", Status: ktap.Pass}, {Name: "2", Status: ktap.Fail}}},
		{Name: "c", Status: ktap.Crashed},
		{Name: "k", Status: ktap.Skip},
	}}}}
	if got := countTests(suites); got != (TestCounts{Passed: 2, Failed: 1, Crashed: 1, Skipped: 1}) {
		t.Errorf("countTests = %+v", got)
	}
	if got := strings.Join(failingTests("s", suites[0].Tests), " "); got != "s.p.2 s.c" {
		t.Errorf("failingTests = %q", got)
	}
	if got := crashedDuring(suites); got != "s.c" {
		t.Errorf("crashedDuring = %q", got)
	}
}
