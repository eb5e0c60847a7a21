package module

import (
	"fmt"
	"strings"

	"github.com/kmodvm/kmodvm/provision/ktap"
	"github.com/kmodvm/kmodvm/provision/ktrace"
)

// VerdictTestsFailed is a module whose KUnit tests failed or crashed, or, for `kmodvm test`,
// one that ran no test at all (exit code 6).
const VerdictTestsFailed = "tests-failed"

// SuiteResult is one KUnit suite a module ran, as the kernel reported it.
type SuiteResult struct {
	Module    string `json:"module"`
	Iteration int    `json:"iteration"`
	ktap.Suite
}

// TestCounts adds up the leaf tests of all suites.
type TestCounts struct {
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	Crashed int `json:"crashed"`
}

// Total is every test counted.
func (c TestCounts) Total() int { return c.Passed + c.Failed + c.Skipped + c.Crashed }

// countTests counts the leaf tests of suites: a parameterized test counts its cases.
func countTests(suites []SuiteResult) TestCounts {
	var c TestCounts
	var walk func([]ktap.Test)
	walk = func(tests []ktap.Test) {
		for _, t := range tests {
			if len(t.Subtests) > 0 {
				walk(t.Subtests)
				continue
			}
			switch t.Status {
			case ktap.Pass:
				c.Passed++
			case ktap.Skip:
				c.Skipped++
			case ktap.Crashed:
				c.Crashed++
			default:
				c.Failed++
			}
		}
	}
	for _, s := range suites {
		walk(s.Tests)
	}
	return c
}

// kunitSuites reads the KTAP a step's kernel log records hold: the suites a load ran (KUnit's
// autorun), or the one a kunit-run step ran. The records of a step that crashed the guest
// come from its console, and end where the kernel stopped: the tests that never reported
// are crashed, and the one that was running is named from the trace when it shows.
func kunitSuites(st Step, module, hostDir string) []SuiteResult {
	var lines []ktap.Line
	for _, rec := range st.records {
		for _, l := range strings.Split(rec.Text, "\n") {
			lines = append(lines, ktap.Line{Text: l, At: rec.TS})
		}
	}
	parsed := ktap.ParseLines(lines)
	culprit := ktrace.CrashedKUnitTest(st.records)
	var out []SuiteResult
	for _, s := range parsed.Suites {
		nameCrashed(s.Tests, culprit)
		mapLocations(s.Tests, hostDir)
		s.Diagnostics = hostDiagnostics(s.Diagnostics, hostDir)
		out = append(out, SuiteResult{Module: module, Iteration: st.Iteration, Suite: s})
	}
	return out
}

// nameCrashed gives the first crashed test whose name KTAP never printed (it had not reported
// when the kernel stopped) the name the trace shows.
func nameCrashed(tests []ktap.Test, name string) {
	if name == "" {
		return
	}
	for i := range tests {
		if tests[i].Status == ktap.Crashed && strings.HasPrefix(tests[i].Name, "#") {
			tests[i].Name = name
			return
		}
	}
}

func mapLocations(tests []ktap.Test, hostDir string) {
	for i := range tests {
		tests[i].Diagnostics = hostDiagnostics(tests[i].Diagnostics, hostDir)
		mapLocations(tests[i].Subtests, hostDir)
	}
}

// hostDiagnostics points the file:line a failing test names (relative to the module dir in
// the guest) at the module's file on the host.
func hostDiagnostics(lines []string, hostDir string) []string {
	for i, l := range lines {
		lines[i] = hostRelPaths(l, hostDir)
	}
	return lines
}

// judgeTests turns the tests' results into a verdict, for a run whose steps themselves went
// well: any failed or crashed test fails it; `kmodvm test` (tests) also fails a module that
// ran none, and says why.
func judgeTests(res *Result, tests bool, registered []string, kunitOff bool) (string, string) {
	c := res.Tests
	if c.Failed+c.Crashed > 0 {
		var names []string
		for _, s := range res.KUnit {
			names = append(names, failingTests(s.Name, s.Tests)...)
		}
		return VerdictTestsFailed, fmt.Sprintf("%d of %d KUnit tests failed: %s", c.Failed+c.Crashed, c.Total(), strings.Join(names, ", "))
	}
	if !tests {
		return VerdictOK, "ok"
	}
	switch {
	case kunitOff:
		return VerdictTestsFailed, "no test ran: the guest's kernel has no KUnit (CONFIG_KUNIT=y and CONFIG_KUNIT_DEBUGFS=y); kmodvm's default kernel has it, so a kmodvm.yaml kernel.fragments line or a local tree's config turned it off"
	case len(res.KUnit) == 0 && len(registered) == 0:
		return VerdictTestsFailed, "no test ran: the module registers no KUnit suite that the filter matches (Rust: #[kunit_tests(NAME)] on a mod of #[test] fns; C: kunit_test_suite())"
	case c.Total() == 0:
		return VerdictTestsFailed, "no test ran: the suites " + strings.Join(registered, ", ") + " hold no test that the filter matches"
	}
	return VerdictOK, fmt.Sprintf("%d KUnit tests passed, %d skipped", c.Passed, c.Skipped)
}

// failingTests names the failed and crashed tests as suite.test.
func failingTests(prefix string, tests []ktap.Test) []string {
	var names []string
	for _, t := range tests {
		switch {
		case len(t.Subtests) > 0:
			names = append(names, failingTests(prefix+"."+t.Name, t.Subtests)...)
		case t.Status == ktap.Fail || t.Status == ktap.Crashed:
			names = append(names, prefix+"."+t.Name)
		}
	}
	return names
}

// notRunNote is what `run` says about suites the module registered that did not run at
// insmod (a kernel whose KUnit autorun is off).
func notRunNote(dir string, suites []string) string {
	return fmt.Sprintf("the module registers the KUnit suites %s, and they did not run (the kernel's KUnit autorun is off); `kmodvm test %s` runs them",
		strings.Join(suites, ", "), dir)
}

// crashedDuring names the test a kernel problem most likely came from, as suite.test: the
// first that crashed (never reported), else the first that failed (KUnit reports a test whose
// thread oopsed as failed); "" when none did. A crashed test whose name neither KTAP nor the
// trace gave is told by its number and the test before it.
func crashedDuring(suites []SuiteResult) string {
	for _, want := range []ktap.Status{ktap.Crashed, ktap.Fail} {
		for _, s := range suites {
			for i, t := range s.Tests {
				if t.Status != want {
					continue
				}
				if !strings.HasPrefix(t.Name, "#") {
					return s.Name + "." + t.Name
				}
				if i == 0 {
					return fmt.Sprintf("%s %s (its first)", s.Name, t.Name)
				}
				return fmt.Sprintf("%s %s (the one after %s)", s.Name, t.Name, s.Tests[i-1].Name)
			}
		}
	}
	return ""
}
