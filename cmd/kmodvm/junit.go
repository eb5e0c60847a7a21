package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kmodvm/kmodvm/provision/junit"
	"github.com/kmodvm/kmodvm/provision/ktap"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
)

// junitFile is where `test --junit` (or `run --junit`) writes, checked before the run: a typo
// in the path must not cost a build and a test run first.
type junitFile struct {
	path    string
	command string // run or test: names the report
}

func openJUnit(p, command string) (*junitFile, error) {
	if p == "" {
		return nil, nil
	}
	dir := filepath.Dir(p)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--junit %s: the directory %s does not exist; hint: create it first (mkdir -p %s)", p, dir, dir)
	}
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		return nil, fmt.Errorf("--junit %s is a directory; hint: name a file, e.g. --junit %s", p, filepath.Join(p, "kunit.xml"))
	}
	return &junitFile{path: p, command: command}, nil
}

// write writes the result as JUnit XML, through a temp file renamed into place, so a CI never
// reads half a report.
func (j *junitFile) write(res *module.Result, release string) error {
	return j.writeSuites(junitReport(j.command, res, release))
}

// writeSuites writes report through a temp file renamed into place.
func (j *junitFile) writeSuites(report junit.Suites) error {
	tmp, err := os.CreateTemp(filepath.Dir(j.path), ".kmodvm-junit-*")
	if err != nil {
		return fmt.Errorf("write the JUnit report %s: %w", j.path, err)
	}
	defer os.Remove(tmp.Name())
	if err := junit.Write(tmp, report); err != nil {
		tmp.Close()
		return fmt.Errorf("write the JUnit report %s: %w", j.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write the JUnit report %s: %w", j.path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write the JUnit report %s: %w", j.path, err)
	}
	if err := os.Rename(tmp.Name(), j.path); err != nil {
		return fmt.Errorf("write the JUnit report %s: %w", j.path, err)
	}
	return nil
}

// junitReport is one testsuite per KUnit suite, a testcase per test (a parameterized test's
// cases each), classname module.suite. A crashed test is an error carrying the kernel's
// trace. A run that never got to the tests (build or load failed, no test) is one testsuite
// "kmodvm" with one errored case that says why, so a CI shows the failure, not an empty
// report; so is a verdict no failed or crashed test explains (`run`: a WARNING at unload
// after the suites passed).
func junitReport(command string, res *module.Result, release string) junit.Suites {
	report := junit.Suites{Name: "kmodvm " + command + " " + res.Module}
	trace := crashLog(res)
	for _, s := range res.KUnit {
		js := junit.Suite{
			Name: s.Name,
			Time: s.Duration,
			Properties: []junit.Property{
				{Name: "module", Value: s.Module},
				{Name: "kernel_release", Value: release},
			},
		}
		class := s.Module + "." + s.Name
		for _, t := range s.Tests {
			js.Cases = append(js.Cases, junitCases(class, "", t, trace)...)
		}
		if len(s.Diagnostics) > 0 {
			js.SystemOut = strings.Join(s.Diagnostics, "\n")
		}
		report.Suites = append(report.Suites, js)
	}
	if res.Verdict != module.VerdictOK && res.Tests.Failed+res.Tests.Crashed == 0 {
		text := res.Title
		if !res.Build.OK {
			text += "\n\n" + res.Build.Output
		} else if trace != "" {
			text += "\n\n" + trace
		}
		report.Suites = append(report.Suites, junit.Suite{
			Name:  "kmodvm",
			Cases: []junit.Case{{Name: res.Verdict, Classname: "kmodvm", Time: res.Duration, Error: &junit.Failure{Message: res.Title, Type: res.Verdict, Text: text}}},
		})
	}
	return report
}

func junitCases(class, prefix string, t ktap.Test, trace string) []junit.Case {
	name := prefix + t.Name
	if len(t.Subtests) > 0 {
		var cases []junit.Case
		for _, sub := range t.Subtests {
			cases = append(cases, junitCases(class, name+"/", sub, trace)...)
		}
		return cases
	}
	c := junit.Case{Name: name, Classname: class, Time: t.Duration}
	diag := strings.Join(t.Diagnostics, "\n")
	switch t.Status {
	case ktap.Fail:
		c.Failure = &junit.Failure{Message: summaryLine(diag, "failed"), Type: "kunit", Text: diag}
	case ktap.Crashed:
		text := diag
		if trace != "" {
			text = strings.TrimSpace(text + "\n\n" + trace)
		}
		c.Error = &junit.Failure{Message: summaryLine(t.Reason, "crashed"), Type: "crash", Text: text}
	case ktap.Skip:
		c.Skipped = &junit.Skipped{Message: t.Reason}
	}
	return []junit.Case{c}
}

// crashLog is what a crashed test's error carries of the steps where the kernel reported a
// problem: the findings, the decoded traces, then the kernel log they came from.
func crashLog(res *module.Result) string {
	var lines []string
	for _, s := range res.Steps {
		if len(s.Findings) == 0 && !s.Crashed {
			continue
		}
		for _, f := range s.Findings {
			lines = append(lines, string(f.Class)+": "+f.Title)
		}
		for _, t := range s.Traces {
			lines = append(lines, "", "trace:", strings.TrimRight(ktrace.Format(t), "\n"))
		}
		if len(s.Traces) > 0 {
			lines = append(lines, "", "kernel log:")
		}
		lines = append(lines, s.Log...)
	}
	return strings.Join(lines, "\n")
}

func summaryLine(s, dflt string) string {
	if l := strings.TrimSpace(firstLine(strings.TrimSpace(s))); l != "" {
		return l
	}
	return dflt
}
