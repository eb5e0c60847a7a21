package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/junit"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktap"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// The JUnit report of a test run (golden, -update rewrites): a suite with a pass, a failure,
// a skip, a parameterized test and a crashed test carrying the decoded trace and the log; and a run that never
// reached the tests.
func TestJUnitReport(t *testing.T) {
	crashed := &module.Result{
		Module: "/src/m", Modules: []string{"m"}, Verdict: module.VerdictKernelProblem, Title: "Kernel panic",
		Build: module.BuildResult{OK: true},
		Steps: []module.Step{{Action: "load", Module: "m", Crashed: true,
			Findings: []kmsg.Finding{{Class: "panic", Title: "Kernel panic - not syncing: boom"}},
			Traces: []ktrace.Trace{{Kind: "panic", Title: "Kernel panic - not syncing: boom", KUnitTest: "m_crashes", Frames: []ktrace.Frame{
				{Func: "m_crashes", Offset: 0x36, Size: 0x90, Module: "m", Reliable: true, File: "/src/m/m.c", Line: 30, Source: `panic("boom");`},
				{Func: "kunit_try_run_case", Offset: 0x69, Size: 0x140, Reliable: false},
			}}},
			Log: []string{"[    2.200000] Kernel panic - not syncing: boom", "[    2.200001]  m_crashes+0x36/0x90 [m]", "[    2.200002]  ? kunit_try_run_case+0x69/0x140"}}},
		KUnit: []module.SuiteResult{{Module: "m", Iteration: 1, Suite: ktap.Suite{Name: "s", Status: ktap.Crashed, Duration: 30 * time.Millisecond, Tests: []ktap.Test{
			{Name: "adds", Status: ktap.Pass, Duration: time.Millisecond},
			{Name: "fails", Status: ktap.Fail, Diagnostics: []string{"# fails: EXPECTATION FAILED at /src/m/m.c:22", "Expected 1 == 2"}},
			{Name: "later", Status: ktap.Skip, Reason: "needs a device"},
			{Name: "params", Status: ktap.Pass, Subtests: []ktap.Test{{Name: "zero", Status: ktap.Pass}, {Name: "one", Status: ktap.Pass}}},
			{Name: "#5", Status: ktap.Crashed, Reason: ktap.ReasonNeverReported},
		}}}},
		Tests: module.TestCounts{Passed: 3, Failed: 1, Skipped: 1, Crashed: 1},
	}
	unbuilt := &module.Result{Module: "/src/m", Verdict: module.VerdictBuildFailed, Title: "module did not build",
		Build: module.BuildResult{Output: "/src/m/m.c:1:1: error: expected ';'"}}
	// `run`: the suites passed at insmod, then rmmod warned; no test explains the verdict.
	warnedAtUnload := &module.Result{
		Module: "/src/m", Verdict: module.VerdictKernelProblem, Title: "WARNING in m_exit (/src/m/m.c:40)",
		Build: module.BuildResult{OK: true},
		Steps: []module.Step{{Action: "load", Module: "m", OK: true}, {Action: "unload", Module: "m", OK: true,
			Findings: []kmsg.Finding{{Class: "warning", Title: "WARNING in m_exit (/src/m/m.c:40)"}},
			Log:      []string{"[    3.100000] WARNING: CPU: 0 PID: 77 at /src/m/m.c:40 m_exit+0x10/0x20 [m]"}}},
		KUnit: []module.SuiteResult{{Module: "m", Iteration: 1, Suite: ktap.Suite{Name: "s", Status: ktap.Pass, Tests: []ktap.Test{
			{Name: "adds", Status: ktap.Pass},
		}}}},
		Tests: module.TestCounts{Passed: 1},
	}
	for _, tt := range []struct {
		name, command string
		res           *module.Result
	}{{"crashed", "test", crashed}, {"unbuilt", "test", unbuilt}, {"run-warned", "run", warnedAtUnload}} {
		name, res := tt.name, tt.res
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := junit.Write(&b, junitReport(tt.command, res, "7.2.13-kmodvm-1e61f939")); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "junit-"+name+".xml"), b.Bytes())
		})
	}
	// `test --json` of the crashed run, as a CI reads it (golden): each test's status,
	// reason, diagnostics and time, the counts, the crash's decoded trace.
	t.Run("test --json", func(t *testing.T) {
		data, err := json.MarshalIndent(runJSON{Schema: schemaTest, Result: crashed, KernelRelease: "7.2.13-kmodvm-1e61f939",
			ConfigHash: "c0ffee", ExitCode: verdictExitCode(crashed.Verdict)}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, filepath.Join("testdata", "test-crashed.json"), append(data, '\n'))
	})
}

// --junit is checked before the run: a missing directory or a directory given as the file
// is a usage error with a hint.
func TestOpenJUnit(t *testing.T) {
	dir := t.TempDir()
	if j, err := openJUnit("", "test"); j != nil || err != nil {
		t.Errorf("no --junit: %v %v", j, err)
	}
	if _, err := openJUnit(filepath.Join(dir, "missing", "k.xml"), "test"); err == nil {
		t.Error("a file in a missing directory was accepted")
	}
	if _, err := openJUnit(dir, "test"); err == nil {
		t.Error("a directory was accepted as the report file")
	}
	j, err := openJUnit(filepath.Join(dir, "k.xml"), "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := j.write(&module.Result{Verdict: module.VerdictOK}, "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "k.xml")); err != nil {
		t.Errorf("no report written: %v", err)
	}
}
