package main

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestE2EKUnit: kmodvm test on the default kernel with Rust and C modules whose KUnit tests
// pass, fail, skip, oops, panic and hang the guest; run fails a module whose tests fail; --filter,
// --json and --junit as a CI reads them.
func TestE2EKUnit(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	name, _ := e2eVM(t, "e2e-kunit")
	n := []string{"-n", name}
	root := repoRoot(t)
	mod := func(p string) string { return filepath.Join(root, p) }
	mustCLI(t, ctx, append([]string{"up"}, n...)...)

	test := func(dir string, want int, mustSee []string, extra ...string) string {
		t.Helper()
		code, out, _ := cli(t, ctx, append(append(append([]string{"test"}, n...), extra...), dir)...)
		if code != want {
			t.Errorf("kmodvm test %s %v: exit %d, want %d", dir, extra, code, want)
		}
		for _, s := range mustSee {
			if !strings.Contains(out, s) {
				t.Errorf("kmodvm test %s %v: output lacks %q", dir, extra, s)
			}
		}
		return out
	}
	test(mod("examples/rust-hello"), 0, []string{"pass     greeting_counts_from_one", "2 KUnit tests passed"})
	test(mod("examples/c-hello"), 0, []string{"pass     c_hello_greets_whom_verbatim"})
	test(mod("testdata/modules/kunit-rust"), 6, []string{
		"fail     kunit_rust_fails",
		"ASSERTION FAILED at " + mod("testdata/modules/kunit-rust/kunit_rust.rs") + ":",
		"tests-failed — 1 of 4 KUnit tests failed: kunit_rust.kunit_rust_fails",
	})
	test(mod("testdata/modules/kunit-c"), 0, []string{"1 KUnit tests passed"}, "--filter", "kunit_c.kunit_c_passes")

	// The JUnit report: one testsuite, the failure with its host path, the skip's reason,
	// the parameterized test's cases.
	junitPath := filepath.Join(t.TempDir(), "kunit.xml")
	// A test's time is shown when KUnit measured one: a skip can take a tick under TCG.
	out := test(mod("testdata/modules/kunit-c"), 6, nil, "--junit", junitPath)
	if !regexp.MustCompile(`(?m)^  skip     kunit_c_skipped( \(\d+\.\d+ s\))? — not run on purpose$`).MatchString(out) {
		t.Errorf("kmodvm test kunit-c: no skipped test with its reason:\n%s", out)
	}
	data, err := os.ReadFile(junitPath)
	if err != nil {
		t.Fatalf("no JUnit report: %v", err)
	}
	var report struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Skipped  int    `xml:"skipped,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Text string `xml:",chardata"`
				} `xml:"failure"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &report); err != nil {
		t.Fatalf("the JUnit report is not XML: %v\n%s", err, data)
	}
	if len(report.Suites) != 1 || report.Suites[0].Name != "kunit_c" || report.Suites[0].Tests != 6 || report.Suites[0].Failures != 1 || report.Suites[0].Skipped != 1 {
		t.Errorf("JUnit report: want one testsuite kunit_c with 6 tests, 1 failure, 1 skipped:\n%s", data)
	} else {
		var names []string
		for _, c := range report.Suites[0].Cases {
			names = append(names, c.Name)
			if c.Failure != nil && !strings.Contains(c.Failure.Text, mod("testdata/modules/kunit-c/kunit_c.c")+":") {
				t.Errorf("JUnit failure of %s does not name the host source: %q", c.Name, c.Failure.Text)
			}
			if c.Skipped != nil && c.Skipped.Message != "not run on purpose" {
				t.Errorf("JUnit skip of %s: reason %q", c.Name, c.Skipped.Message)
			}
		}
		if !strings.Contains(strings.Join(names, " "), "kunit_c_params/minus three") {
			t.Errorf("JUnit cases %v lack the parameterized test's cases", names)
		}
	}

	// --json carries every test.
	code, out, _ := cli(t, ctx, append(append([]string{"test"}, n...), "--json", mod("testdata/modules/kunit-rust"))...)
	var rj struct {
		Verdict string `json:"verdict"`
		Tests   struct{ Passed, Failed, Skipped, Crashed int }
		KUnit   []struct {
			Name  string `json:"Name"`
			Tests []struct{ Name, Status string }
		} `json:"kunit"`
	}
	if code != 6 || json.Unmarshal([]byte(out), &rj) != nil || rj.Verdict != "tests-failed" || rj.Tests.Passed != 2 || rj.Tests.Failed != 1 || rj.Tests.Skipped != 1 || len(rj.KUnit) != 1 || len(rj.KUnit[0].Tests) != 4 {
		t.Errorf("test --json: exit %d, %+v\n%s", code, rj, out)
	}

	// run judges the tests that ran at insmod: no false ok.
	code, out, _ = cli(t, ctx, append(append([]string{"run"}, n...), mod("testdata/modules/kunit-rust"))...)
	if code != 6 || !strings.Contains(out, "verdict: tests-failed") {
		t.Errorf("run of a module whose KUnit test fails: exit %d, want 6:\n%s", code, out)
	}

	// An oops in a test kills only KUnit's thread: the test fails, the kernel problem is the
	// verdict, and it names the test; the oopsed kernel (taint D) is not used again.
	test(mod("testdata/modules/kunit-crash-c"), 5, []string{
		"fail     kunit_crash_c_oops",
		"during the KUnit test kunit_crash_c.kunit_crash_c_oops",
		"guest:   restarted",
	})
	// The same in Rust: the panic in a test is a BUG, an oops in KUnit's thread; the trace
	// points at the module's own line (the default kernel has line tables): the panic's
	// location, and the top module frame too, with the line itself, though the indexing that
	// panicked is KVec's and core's, inlined into the test.
	panicLine := lineOf(t, mod("testdata/modules/kunit-crash-rust/kunit_crash_rust.rs"), "let x = v[i];")
	test(mod("testdata/modules/kunit-crash-rust"), 5, []string{
		"pass     kunit_crash_rust_passes",
		"fail     kunit_crash_rust_panics",
		"pass     kunit_crash_rust_after",
		"during the KUnit test kunit_crash_rust.kunit_crash_rust_panics",
		fmt.Sprintf("%s:%d", mod("testdata/modules/kunit-crash-rust/kunit_crash_rust.rs"), panicLine),
		"> let x = v[i];",
		"guest:   restarted",
	})
	// A panic in a test: the guest is restarted, the tests that never reported are crashed,
	// and the next test run works.
	// Test 2 never reported, so its name comes from the panic's trace when the guessing
	// unwinder found its frame on the stack, else from its number and the test before it.
	junitPath = filepath.Join(t.TempDir(), "crash.xml")
	out = test(mod("testdata/modules/kunit-crash-c"), 5, []string{"guest:   restarted"}, "-p", "panic=1", "--junit", junitPath)
	byName := strings.Contains(out, "crashed  kunit_crash_c_oops") && strings.Contains(out, "during the KUnit test kunit_crash_c.kunit_crash_c_oops")
	byNumber := strings.Contains(out, "crashed  #2") && strings.Contains(out, "during the KUnit test kunit_crash_c #2 (the one after kunit_crash_c_passes)")
	if !byName && !byNumber {
		t.Errorf("a test that panics: the verdict does not name test 2, by name or by number:\n%s", out)
	}
	if data, err := os.ReadFile(junitPath); err != nil || !strings.Contains(string(data), `<error message=`) || !strings.Contains(string(data), "deliberate panic in a test") {
		t.Errorf("JUnit report of a panicking test: want an error with the panic: %v\n%s", err, data)
	}
	// A test that hangs the guest (interrupts off on its only vCPU): the step timeout ends
	// it, kmodvm's NMI makes the guest say where it was (and flush the console: test 1's
	// result was still unprinted), the verdict names the test, the guest is restarted, and
	// JUnit has the error.
	junitPath = filepath.Join(t.TempDir(), "hang.xml")
	test(mod("testdata/modules/kunit-crash-c"), 5, []string{
		"pass     kunit_crash_c_passes",
		"crashed  kunit_crash_c_oops",
		"guest hung while running load kunit_crash_c: no progress within 40s (hung?); its CPU was in kunit_crash_c_oops [kunit_crash_c]",
		"during the KUnit test kunit_crash_c.kunit_crash_c_oops",
		"guest:   restarted",
	}, "-p", "hang=1", "--timeout", "40s", "--junit", junitPath)
	if data, err := os.ReadFile(junitPath); err != nil || !strings.Contains(string(data), `<error message=`) || !strings.Contains(string(data), "hung") {
		t.Errorf("JUnit report of a hanging test: want an error saying it hung: %v\n%s", err, data)
	}
	test(mod("examples/c-hello"), 0, []string{"2 KUnit tests passed"})
}
