package ktap

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConsoleLine(t *testing.T) {
	tests := []struct {
		in   string
		want Line
	}{
		{"[    9.650000] KTAP version 1", Line{Text: "KTAP version 1", At: 9650 * time.Millisecond}},
		{"[    9.650000]     ok 1 t\r\n", Line{Text: "    ok 1 t", At: 9650 * time.Millisecond}},
		{"[    0.060000][    T1] \t1..2", Line{Text: "\t1..2", At: 60 * time.Millisecond}},
		{"[12345.5] x", Line{Text: "x", At: 12345*time.Second + 500*time.Millisecond}},
		{"[    9.650000]", Line{At: 9650 * time.Millisecond}},
		{"[ 1.x] not a timestamp", Line{Text: "[ 1.x] not a timestamp"}},
		{"[    T1] caller id alone stays", Line{Text: "[    T1] caller id alone stays"}},
		{"    ok 1 t", Line{Text: "    ok 1 t"}},
	}
	for _, tt := range tests {
		if got := ConsoleLine(tt.in); got != tt.want {
			t.Errorf("ConsoleLine(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		in   string
		want line
	}{
		{"KTAP version 1", line{kind: versionLine, body: "KTAP version 1"}},
		{"\tTAP version 14", line{kind: versionLine, indent: 4, body: "TAP version 14"}},
		{"KTAP version one", line{kind: unknownLine, body: "KTAP version one"}},
		{"    # Subtest: rust_hello", line{kind: subtestLine, indent: 4, body: "# Subtest: rust_hello", name: "rust_hello"}},
		{"  1..3", line{kind: planLine, indent: 2, body: "1..3", n: 3}},
		{"1..99999999999999999999", line{kind: unknownLine, body: "1..99999999999999999999"}},
		{"ok 1 - name", line{kind: resultLine, body: "ok 1 - name", n: 1, ok: true, name: "name"}},
		{"        not ok 3 octal", line{kind: resultLine, indent: 8, body: "not ok 3 octal", n: 3, name: "octal"}},
		{"ok 2 t # SKIP no IOMMU", line{kind: resultLine, body: "ok 2 t # SKIP no IOMMU", n: 2, ok: true, name: "t", directive: "SKIP no IOMMU"}},
		{"ok 3 # SKIP selftests: x", line{kind: resultLine, body: "ok 3 # SKIP selftests: x", n: 3, ok: true, directive: "SKIP selftests: x"}},
		{"not ok 1 t # TIMEOUT 30 seconds", line{kind: resultLine, body: "not ok 1 t # TIMEOUT 30 seconds", n: 1, name: "t", directive: "TIMEOUT 30 seconds"}},
		{"ok 0 zero", line{kind: resultLine, body: "ok 0 zero", ok: true, name: "zero"}},
		{"ok 12abc", line{kind: unknownLine, body: "ok 12abc"}},
		{"okay 1", line{kind: unknownLine, body: "okay 1"}},
		{"    # t: EXPECTATION FAILED at t.c:1", line{kind: diagLine, indent: 4, body: "# t: EXPECTATION FAILED at t.c:1"}},
		{"\t\tExpected x == y, but", line{kind: unknownLine, indent: 8, body: "Expected x == y, but"}},
	}
	for _, tt := range tests {
		if got := classify(tt.in); got != tt.want {
			t.Errorf("classify(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestSkipReason(t *testing.T) {
	tests := []struct {
		in     string
		reason string
		ok     bool
	}{
		{"SKIP no IOMMU", "no IOMMU", true},
		{"SKIP", "", true},
		{"skip lower case", "lower case", true},
		{"SKIPPED", "", false},
		{"TODO later", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		reason, ok := skipReason(tt.in)
		if reason != tt.reason || ok != tt.ok {
			t.Errorf("skipReason(%q) = %q, %v; want %q, %v", tt.in, reason, ok, tt.reason, tt.ok)
		}
	}
}

func TestDedent(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"    # x", 4, "# x"},
		{"        a == 1", 4, "    a == 1"},
		{"\t\ta == 1", 4, "\ta == 1"},
		{"  two", 4, "two"},
		{"\tx", 2, "  x"},
		{"x", 0, "x"},
		{"   ", 4, ""},
	}
	for _, tt := range tests {
		if got := dedent(tt.in, tt.n); got != tt.want {
			t.Errorf("dedent(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

// TestCRLF: a log with CRLF line ends reads as the same log with LF.
func TestCRLF(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "noise.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("\r\n")) {
		t.Fatal("testdata/noise.log lost its CRLF line ends")
	}
	crlf, err := Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	lf, err := Parse(bytes.NewReader(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(crlf, lf) {
		t.Errorf("CRLF and LF logs parse differently:\n%+v\n%+v", crlf, lf)
	}
}

// TestCrash checks, on small logs, the cases where the log stops before KUnit finished.
func TestCrash(t *testing.T) {
	tests := []struct {
		name   string
		log    string
		suites []string // "name status planned: test status, ..."
		counts Counts
	}{
		{
			name: "plan says 3, one reported",
			log: "    KTAP version 1\n    # Subtest: s\n    1..3\n    ok 1 a\n" +
				"BUG: kernel NULL pointer dereference, address: 0000000000000008\n",
			suites: []string{"s crashed 3: a pass, #2 crashed, #3 crashed"},
			counts: Counts{Passed: 1, Crashed: 2},
		},
		{
			name:   "no plan: the running test is crashed",
			log:    "    KTAP version 1\n    # Subtest: s\n    ok 1 a\n",
			suites: []string{"s crashed -1: a pass, #2 crashed"},
			counts: Counts{Passed: 1, Crashed: 1},
		},
		{
			name: "top-level plan of 2 suites, the first cut",
			log: "KTAP version 1\n1..2\n    KTAP version 1\n    # Subtest: s\n    1..1\n" +
				"Kernel panic - not syncing: Fatal exception\n",
			suites: []string{"s crashed 1: #1 crashed", "#2 crashed -1: "},
			counts: Counts{Crashed: 2},
		},
		{
			name: "a new document after a reboot ends the cut one",
			log: "    KTAP version 1\n    # Subtest: s\n    1..2\n    ok 1 a\n" +
				"reboot: Restarting system\n" +
				"    KTAP version 1\n    # Subtest: s\n    1..2\n    ok 1 a\n    ok 2 b\nok 1 s\n",
			suites: []string{"s crashed 2: a pass, #2 crashed", "s pass 2: a pass, b pass"},
			counts: Counts{Passed: 3, Crashed: 1},
		},
		{
			name:   "closed with fewer results than planned",
			log:    "    KTAP version 1\n    # Subtest: s\n    1..2\n    ok 1 a\nok 1 s\n",
			suites: []string{"s crashed 2: a pass, #2 crashed"},
			counts: Counts{Passed: 1, Crashed: 1},
		},
		{
			name:   "suite init failed: only its result line",
			log:    "    # failed to initialize (-12)\nnot ok 1 s\n",
			suites: []string{"s fail -1: "},
			counts: Counts{Failed: 1},
		},
		{
			name:   "complete top-level document is not crashed",
			log:    "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..1\n    ok 1 a\nok 1 s\n",
			suites: []string{"s pass 1: a pass"},
			counts: Counts{Passed: 1},
		},
		{
			name:   "huge plan is bounded",
			log:    "    KTAP version 1\n    # Subtest: s\n    1..999999999\n",
			counts: Counts{Crashed: maxSynthesized},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Parse(strings.NewReader(tt.log))
			if err != nil {
				t.Fatal(err)
			}
			if tt.suites != nil {
				var got []string
				for _, s := range r.Suites {
					var ts []string
					for _, x := range s.Tests {
						ts = append(ts, x.Name+" "+string(x.Status))
					}
					got = append(got, s.Name+" "+string(s.Status)+" "+itoa(s.Planned)+": "+strings.Join(ts, ", "))
				}
				if !reflect.DeepEqual(got, tt.suites) {
					t.Errorf("suites:\n got %q\nwant %q", got, tt.suites)
				}
			}
			if c := r.Counts(); c != tt.counts {
				t.Errorf("Counts() = %+v, want %+v", c, tt.counts)
			}
		})
	}
}

func itoa(n int) string {
	if n < 0 {
		return "-" + itoa(-n)
	}
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// TestCrashDiagnostics: the test that was running when the kernel crashed holds the oops.
func TestCrashDiagnostics(t *testing.T) {
	r := parseFixture(t, "c_oops_timestamps")
	if len(r.Suites) != 1 {
		t.Fatalf("got %d suites, want 1", len(r.Suites))
	}
	crashed := r.Suites[0].Tests[2]
	if crashed.Status != Crashed || crashed.Reason != ReasonNeverReported {
		t.Fatalf("test 3 = %s %q, want crashed", crashed.Status, crashed.Reason)
	}
	if len(crashed.Diagnostics) == 0 || !strings.HasPrefix(crashed.Diagnostics[0], "BUG: kernel NULL pointer dereference") {
		t.Errorf("test 3 diagnostics start %q, want the oops", crashed.Diagnostics)
	}
	if crashed.Duration <= 0 {
		t.Errorf("test 3 duration %v, want the time from test 2's result to the log's end", crashed.Duration)
	}
	if d := r.Suites[0].Tests[3].Diagnostics; d != nil {
		t.Errorf("test 4 never started but holds %q", d)
	}
}
