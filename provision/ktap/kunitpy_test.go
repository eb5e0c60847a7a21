package ktap

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var kunitpy = flag.String("kunitpy", "", "path of the kernel's tools/testing/kunit/kunit.py: rewrite testdata/*.kunit.json with what it prints")

// kunitGroup is the part of kunit.py's JSON (kunit_json.py) the comparison reads: a test
// with subtests is a group, a test without is a test case.
type kunitGroup struct {
	Name      string       `json:"name"`
	SubGroups []kunitGroup `json:"sub_groups"`
	TestCases []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
	} `json:"test_cases"`
}

// kunitStatus maps kunit.py's statuses to ours. kunit.py says ERROR for a crashed test
// and FAIL for anything else it could not call a pass or a skip.
var kunitStatus = map[string]Status{"PASS": Pass, "FAIL": Fail, "SKIP": Skip, "ERROR": Crashed}

// TestAgainstKunitPy compares, for every fixture with a testdata/<name>.kunit.json, the
// names and statuses of our suites and tests with the kernel's own parser's.
//
// kunit.py names a test that never reported ""; we name it "#N": both read "#?" here.
// Where we read a log differently on purpose, kunitPyDiffers says how and why.
func TestAgainstKunitPy(t *testing.T) {
	if *kunitpy != "" {
		regenerateKunitJSON(t, *kunitpy)
	}
	paths, err := filepath.Glob(filepath.Join("testdata", "*.kunit.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no testdata/*.kunit.json (go test -run TestAgainstKunitPy -kunitpy PATH writes them)")
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".kunit.json")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var top kunitGroup
			if err := json.Unmarshal(data, &top); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			want := flattenKunit(top)
			got := flattenOurs(parseFixture(t, name))
			if d, ok := kunitPyDiffers[name]; ok {
				want = d.apply(t, want)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("ours and kunit.py's differ\nours:\n  %s\nkunit.py:\n  %s",
					strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

// difference is a deliberate departure from kunit.py: where kunit.py reads the lines
// was, we read the lines is.
type difference struct {
	why     string
	was, is []string
}

func (d difference) apply(t *testing.T, want []string) []string {
	t.Helper()
	for i := 0; i+len(d.was) <= len(want); i++ {
		if strings.Join(want[i:i+len(d.was)], "\n") == strings.Join(d.was, "\n") {
			out := append(append(append([]string(nil), want[:i]...), d.is...), want[i+len(d.was):]...)
			return out
		}
	}
	t.Fatalf("kunit.py's reading no longer has %q (%s): update kunitPyDiffers", d.was, d.why)
	return nil
}

var kunitPyDiffers = map[string]difference{
	// A parameterized test without a plan (its parameters come from a generator) that
	// the kernel hung in: kunit.py lists the parameters that reported and stops; we add
	// the parameter that was running, crashed, so the hang is counted and shown.
	"c_hang_noplan": {
		why: "the running parameter of an unplanned document is a crashed entry",
		was: []string{"c_hello_gen/c_hello_wait_test/timeout-100ms pass"},
		is:  []string{"c_hello_gen/c_hello_wait_test/timeout-100ms pass", "c_hello_gen/c_hello_wait_test/#? crashed"},
	},
	// "# Subtest: case" with neither plan nor subtests, then "ok 1 - case": kunit.py calls
	// the test NO_TESTS (FAIL in its JSON); we take the result line's word for it.
	"kernel_is_test_passed-no_tests_no_plan": {
		why: "a result line is believed even when the test announced subtests it did not print",
		was: []string{"suite/case fail"},
		is:  []string{"suite/case pass"},
	},
}

// flattenKunit lists "path status" for every test case, and "path/" for every group, in
// kunit.py's order: a group's test cases, then its sub-groups.
func flattenKunit(top kunitGroup) []string {
	var out []string
	var walk func(prefix string, g kunitGroup)
	walk = func(prefix string, g kunitGroup) {
		for _, c := range g.TestCases {
			st, ok := kunitStatus[c.Status]
			if !ok {
				st = Status("unknown " + c.Status)
			}
			name := c.Name
			if name == "" && st == Crashed {
				name = "#?"
			}
			out = append(out, prefix+name+" "+string(st))
		}
		for _, s := range g.SubGroups {
			out = append(out, prefix+s.Name+"/")
			walk(prefix+s.Name+"/", s)
		}
	}
	walk("", top)
	return out
}

// flattenOurs lists our result the way flattenKunit lists kunit.py's: suites are the
// sub-groups of its top group, a suite without tests is a test case of the top group.
func flattenOurs(r Result) []string {
	var out []string
	var walk func(prefix string, tests []Test)
	walk = func(prefix string, tests []Test) {
		for _, t := range tests {
			if len(t.Subtests) == 0 {
				name := t.Name
				if t.Status == Crashed && strings.HasPrefix(name, "#") {
					name = "#?"
				}
				out = append(out, prefix+name+" "+string(t.Status))
			}
		}
		for _, t := range tests {
			if len(t.Subtests) > 0 {
				out = append(out, prefix+t.Name+"/")
				walk(prefix+t.Name+"/", t.Subtests)
			}
		}
	}
	var top []Test
	for _, s := range r.Suites {
		if len(s.Tests) == 0 && s.Planned != 0 {
			top = append(top, Test{Name: s.Name, Status: s.Status})
		}
	}
	walk("", top)
	for _, s := range r.Suites {
		if len(s.Tests) > 0 || s.Planned == 0 {
			out = append(out, s.Name+"/")
			walk(s.Name+"/", s.Tests)
		}
	}
	return out
}

// regenerateKunitJSON runs "kunit.py parse --json=FILE" on every fixture and stores
// FILE as testdata/<name>.kunit.json.
func regenerateKunitJSON(t *testing.T, script string) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range fixtures(t) {
		in, err := os.ReadFile(filepath.Join("testdata", name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, name+".json")
		cmd := exec.Command(script, "parse", "--json="+out)
		cmd.Stdin = bytes.NewReader(in)
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		// kunit.py exits 1 when tests failed: what counts is that it wrote the JSON.
		runErr := cmd.Run()
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("kunit.py on %s wrote no JSON (%v): %v\n%s", name, runErr, err, stderr.String())
		}
		if err := os.WriteFile(filepath.Join("testdata", name+".kunit.json"), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
