package junit

import (
	"bytes"
	"encoding/xml"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func report() Suites {
	return Suites{
		Name: "kmodvm test examples/c-hello",
		Suites: []Suite{
			{
				Name:       "c_hello",
				Timestamp:  time.Date(2026, 12, 3, 10, 4, 5, 0, time.UTC),
				Time:       3108 * time.Microsecond,
				Properties: []Property{{"kernel", "7.2.13"}, {"module", "c_hello_test"}},
				Cases: []Case{
					{Name: "c_hello_greeting_test", Classname: "c_hello", Time: 391 * time.Microsecond},
					{Name: "c_hello_add_test", Classname: "c_hello", Time: 1200 * time.Microsecond,
						Failure: &Failure{
							Message: "EXPECTATION FAILED at c_hello_test.c:18",
							Type:    "fail",
							Text:    "# c_hello_add_test: EXPECTATION FAILED at c_hello_test.c:18\nExpected c_hello_add(2, 2) == 5, but\n    c_hello_add(2, 2) == 4 (0x4)",
						}},
					{Name: "c_hello_iommu_test", Classname: "c_hello", Skipped: &Skipped{Message: "no IOMMU in this guest"}},
					{Name: "#4", Classname: "c_hello", Time: 4294 * time.Millisecond,
						Error: &Failure{
							Message: "never reported (the kernel crashed or hung during this test)",
							Type:    "crashed",
							Text:    "BUG: kernel NULL pointer dereference, address: 0000000000000008\n\x1b[0mOops: 0000 [#1] SMP\x00 \xff <TASK> & </TASK>",
						},
						SystemOut: "c_hello: list has \x07 3 entries"},
				},
				SystemOut: "c_hello_test: loading out-of-tree module taints kernel.",
			},
			{Name: "empty"},
		},
	}
}

func TestWriteGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := Write(&buf, report()); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.golden.xml")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -update creates it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("Write differs from %s (go test -update rewrites it):\n%s", golden, buf.Bytes())
	}
}

// TestWellFormed: whatever bytes the names and texts carry, the document parses as XML and
// keeps the counts.
func TestWellFormed(t *testing.T) {
	nasty := "a\x00b\x1bc\xfe\xffd\uFFFEe]]>f<g>&h\"i'"
	s := Suites{Name: nasty, Suites: []Suite{{
		Name: nasty, SystemOut: nasty, Properties: []Property{{nasty, nasty}},
		Cases: []Case{
			{Name: nasty, Classname: nasty, SystemOut: nasty, Failure: &Failure{nasty, nasty, nasty}},
			{Name: "e", Error: &Failure{Text: nasty}, Failure: &Failure{Text: "also"}},
			{Name: "s", Skipped: &Skipped{Message: nasty}},
			{Name: "p"},
		},
	}}}
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		t.Fatal(err)
	}
	var doc xmlSuites
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("output is not well-formed XML: %v\n%s", err, buf.Bytes())
	}
	if doc.Tests != 4 || doc.Failures != 1 || doc.Errors != 1 || doc.Skipped != 1 {
		t.Errorf("counts tests=%d failures=%d errors=%d skipped=%d, want 4 1 1 1", doc.Tests, doc.Failures, doc.Errors, doc.Skipped)
	}
	if want := `a\x00b\x1bc\xfe\xffd\xef\xbf\xbee]]>f<g>&h"i'`; doc.Suites[0].Cases[0].Failure.Text != want {
		t.Errorf("failure text read back %q, want %q", doc.Suites[0].Cases[0].Failure.Text, want)
	}
	if c := doc.Suites[0].Cases[1]; c.Failure != nil || c.Error == nil {
		t.Errorf("a case with an error and a failure is written as %+v, want the error alone", c)
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"tab\tnewline\ncr\r", "tab\tnewline\ncr\r"},
		{"bell\x07", `bell\x07`},
		{"nul\x00", `nul\x00`},
		{"bad utf8 \xc3", `bad utf8 \xc3`},
		{"émoji 🙂", "émoji 🙂"},
		{"\uFFFF", `\xef\xbf\xbf`},
	}
	for _, tt := range tests {
		if got := clean(tt.in); got != tt.want {
			t.Errorf("clean(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0.000", 1500 * time.Microsecond: "0.002", 4294 * time.Millisecond: "4.294", 90 * time.Second: "90.000"} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestWriteError(t *testing.T) {
	err := Write(failingWriter{}, report())
	if err == nil || !strings.Contains(err.Error(), "writing JUnit XML") {
		t.Errorf("Write to a failing writer = %v, want a wrapped error", err)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }
