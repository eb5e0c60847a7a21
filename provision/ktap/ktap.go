// Package ktap reads the KTAP (and older "TAP version 14") results KUnit prints in the
// kernel log and turns them into suites and tests with a status each.
//
// It follows Documentation/dev-tools/ktap.rst and what lib/kunit/test.c prints: a suite is
// a nested KTAP document ("    KTAP version 1", "    # Subtest: name", "    1..M", result
// lines, then "ok N name" one level out), either under a top-level document ("KTAP version
// 1", "1..N", printed when suites run at boot or at module load with autorun) or on its
// own (a suite run through debugfs). A kernel log also carries lines from other drivers and,
// when a test brings the kernel down, an oops and then nothing: a suite that planned M tests
// and reported fewer is "crashed", and each test that never reported becomes a crashed entry.
package ktap

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"
)

// Line is one line of a kernel log.
type Line struct {
	Text string `json:"text"`
	// At is the kernel's timestamp of the line, 0 if unknown.
	At time.Duration `json:"at,omitempty"`
}

// Status is the outcome of a test or a suite.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Skip Status = "skip"
	// Crashed: the test or suite never reported its result, or was cut short, because
	// the kernel crashed or hung (or the log ends).
	Crashed Status = "crashed"
)

// Reasons given to entries the log never finished.
const (
	ReasonNeverReported = "never reported (the kernel crashed or hung during this test)"
	ReasonCutShort      = "cut short (the kernel crashed or hung before it reported its result)"
	// A document that reported its result, yet holds a crashed entry.
	ReasonSubtestCrashed = "a subtest never reported (the kernel crashed or hung)"
)

// Test is one test case, or one parameter of a parameterized test.
type Test struct {
	// Name is the name on the result line. A test that never reported is named "#N"
	// (N its number): KUnit prints a test's name only with its result, so the name is
	// left to a caller that can read it elsewhere (a crash trace).
	Name   string `json:"name"`
	Number int    `json:"number"`
	Status Status `json:"status"`
	// Reason is the text after "#" on the result line (for a skip, the reason without
	// the SKIP keyword), or why the test is crashed.
	Reason string `json:"reason,omitempty"`
	// Diagnostics are the lines the test printed before its result ("# name:
	// EXPECTATION FAILED at file.c:12", "Expected x == y, but", ...), with the KTAP
	// indentation removed. For the first test that never reported, they also hold the
	// kernel's lines after the last result (the oops).
	Diagnostics []string `json:"diagnostics,omitempty"`
	// Duration is the time between the previous result line (or the start of the
	// enclosing document) and this test's result line; 0 if the log has no timestamps.
	Duration time.Duration `json:"duration,omitempty"`
	// Subtests are the parameters of a parameterized test (a nested KTAP document).
	Subtests []Test `json:"subtests,omitempty"`
}

// Suite is one KUnit suite.
type Suite struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"`
	Tests  []Test `json:"tests,omitempty"`
	// Planned is the count of the suite's plan line ("1..M"), -1 without one.
	Planned int `json:"planned"`
	// Diagnostics are the suite's own lines: attributes ("# module: x"), the
	// "# name: pass:2 fail:0 ..." and "# Totals: ..." lines.
	Diagnostics []string      `json:"diagnostics,omitempty"`
	Duration    time.Duration `json:"duration,omitempty"`
}

// Result is what a kernel log says about the KUnit suites that ran in it.
type Result struct {
	Suites []Suite `json:"suites"`
	// Lines are the log's lines that are no part of any test: other drivers, the
	// kernel's own messages, an oops. A crash trace is here and also in the
	// Diagnostics of the test it interrupted.
	Lines []Line `json:"lines,omitempty"`
}

// Counts are the leaf tests of a result by status.
type Counts struct {
	Passed  int `json:"passed"`
	Failed  int `json:"failed"`
	Skipped int `json:"skipped"`
	Crashed int `json:"crashed"`
}

// Total is the number of leaf tests counted.
func (c Counts) Total() int { return c.Passed + c.Failed + c.Skipped + c.Crashed }

func (c *Counts) add(s Status) {
	switch s {
	case Pass:
		c.Passed++
	case Fail:
		c.Failed++
	case Skip:
		c.Skipped++
	default:
		c.Crashed++
	}
}

// Counts counts leaf tests: the parameters of a parameterized test, not the test. A
// suite without tests that reported a result (one whose init failed prints only "not
// ok N suite") counts as one, unless its plan said it has no tests. A parameterized
// test reported "not ok" whose parameters all passed counts one failure, as kunit.py does.
func (r Result) Counts() Counts {
	var c Counts
	for _, s := range r.Suites {
		if len(s.Tests) == 0 {
			if s.Planned != 0 {
				c.add(s.Status)
			}
			continue
		}
		countTests(&c, s.Tests)
	}
	return c
}

func countTests(c *Counts, tests []Test) {
	for _, t := range tests {
		if len(t.Subtests) == 0 {
			c.add(t.Status)
			continue
		}
		var sub Counts
		countTests(&sub, t.Subtests)
		if t.Status == Fail && sub.Failed == 0 && sub.Crashed == 0 {
			sub.Failed++
		}
		c.Passed += sub.Passed
		c.Failed += sub.Failed
		c.Skipped += sub.Skipped
		c.Crashed += sub.Crashed
	}
}

// Parse reads a kernel log as text, one line per line, and parses it. A console
// timestamp at the start of a line ("[   12.345678] ", optionally followed by a caller
// id "[    T1] ") is removed and becomes the line's At. Carriage returns are dropped.
func Parse(r io.Reader) (Result, error) {
	var lines []Line
	br := bufio.NewReader(r)
	for {
		s, err := br.ReadString('\n')
		if s != "" {
			lines = append(lines, ConsoleLine(s))
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return Result{}, fmt.Errorf("reading kernel log: %w", err)
		}
	}
	return ParseLines(lines), nil
}

// ConsoleLine splits a console line into its text and timestamp. The one space the
// kernel puts after the timestamp is removed; the KTAP indentation after it is kept.
func ConsoleLine(s string) Line {
	s = strings.TrimRight(s, "\r\n")
	at, rest, ok := consoleTimestamp(s)
	if !ok {
		return Line{Text: s}
	}
	// A caller id ("[    T1]", "[    C0]") follows the timestamp when
	// CONFIG_PRINTK_CALLER is set.
	if cid, ok := callerID(rest); ok {
		rest = cid
	}
	rest = strings.TrimPrefix(rest, " ")
	return Line{Text: rest, At: at}
}

// consoleTimestamp reads "[ seconds.fraction]" at the start of s.
func consoleTimestamp(s string) (time.Duration, string, bool) {
	if !strings.HasPrefix(s, "[") {
		return 0, s, false
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return 0, s, false
	}
	num := strings.TrimLeft(s[1:end], " ")
	secs, frac, ok := strings.Cut(num, ".")
	if !ok || secs == "" || frac == "" || len(secs) > 10 || len(frac) > 9 || !allDigits(secs) || !allDigits(frac) {
		return 0, s, false
	}
	var d time.Duration
	for _, c := range secs {
		d = d*10 + time.Duration(c-'0')
	}
	d *= time.Second
	unit := time.Duration(100_000_000)
	for _, c := range frac {
		d += time.Duration(c-'0') * unit
		unit /= 10
	}
	return d, s[end+1:], true
}

func callerID(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") {
		return s, false
	}
	end := strings.IndexByte(s, ']')
	if end < 0 {
		return s, false
	}
	id := strings.TrimLeft(s[1:end], " ")
	if len(id) < 2 || (id[0] != 'T' && id[0] != 'C') || !allDigits(id[1:]) {
		return s, false
	}
	return s[end+1:], true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
