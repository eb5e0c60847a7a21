package kmsg

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/golden"
)

const reportDir = "testdata/report"

// fixture is one file under testdata/report: header lines, a blank line,
// then a raw kernel log.
//
//	VERDICT: ok | <class of the first finding>
//	TITLE: ok | <title of the first finding>
//	ALSO: <class>: <title>     (one per further finding)
//	FORMAT: kmsg               (optional: the log is /dev/kmsg lines)
type fixture struct {
	verdict, title string
	also           []string
	format         string
	log            string
}

func readFixture(path string) (fixture, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return fixture{}, err
	}
	head, log, ok := strings.Cut(string(data), "\n\n")
	if !ok {
		return fixture{}, fmt.Errorf("%s: no blank line between the header and the log", path)
	}
	fx := fixture{log: log}
	for l := range strings.SplitSeq(head, "\n") {
		key, val, ok := strings.Cut(l, ": ")
		switch {
		case !ok:
			return fixture{}, fmt.Errorf("%s: bad header line %q", path, l)
		case key == "VERDICT":
			fx.verdict = val
		case key == "TITLE":
			fx.title = val
		case key == "ALSO":
			fx.also = append(fx.also, val)
		case key == "FORMAT":
			fx.format = val
		default:
			return fixture{}, fmt.Errorf("%s: unknown header %q", path, key)
		}
	}
	if fx.verdict == "" || fx.title == "" {
		return fixture{}, fmt.Errorf("%s: VERDICT and TITLE headers are required", path)
	}
	return fx, nil
}

func (fx fixture) bytes() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "VERDICT: %s\nTITLE: %s\n", fx.verdict, fx.title)
	for _, a := range fx.also {
		fmt.Fprintf(&b, "ALSO: %s\n", a)
	}
	if fx.format != "" {
		fmt.Fprintf(&b, "FORMAT: %s\n", fx.format)
	}
	b.WriteString("\n")
	b.WriteString(fx.log)
	return []byte(b.String())
}

// expect fills in the header a verdict gives.
func expect(v Verdict) (verdict, title string, also []string) {
	if v.OK {
		return "ok", "ok", nil
	}
	for _, f := range v.Findings[1:] {
		also = append(also, string(f.Class)+": "+f.Title)
	}
	return string(v.Findings[0].Class), v.Findings[0].Title, also
}

func fixturePaths(t testing.TB) []string {
	paths, err := filepath.Glob(filepath.Join(reportDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no fixtures in %s", reportDir)
	}
	return paths
}

func TestFixtures(t *testing.T) {
	seen := make(map[string]bool)
	for _, path := range fixturePaths(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			fx, err := readFixture(path)
			if err != nil {
				t.Fatal(err)
			}
			switch fx.format {
			case "":
			case "kmsg":
				for l := range strings.Lines(fx.log) {
					if _, ok := ParseKmsgLine(l); !ok && !strings.HasPrefix(l, " ") {
						t.Errorf("FORMAT: kmsg, but this line does not parse: %q", l)
					}
				}
			default:
				t.Fatalf("unknown FORMAT %q", fx.format)
			}
			recs := ParseLog(fx.log)
			if len(recs) == 0 {
				t.Fatal("the log parsed to no records")
			}
			v := Classify(recs)
			checkVerdict(t, recs, v)
			verdict, title, also := expect(v)
			seen[verdict] = true
			if golden.Update() {
				fx.verdict, fx.title, fx.also = verdict, title, also
				if err := os.WriteFile(path, fx.bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if verdict != fx.verdict {
				t.Errorf("VERDICT: got %q, want %q", verdict, fx.verdict)
			}
			if title != fx.title {
				t.Errorf("TITLE:\n got %q\nwant %q", title, fx.title)
			}
			if !slices.Equal(also, fx.also) {
				t.Errorf("ALSO:\n got %q\nwant %q", also, fx.also)
			}
		})
	}
	// Every class the log can show has a fixture.
	for _, c := range Classes {
		if !seen[string(c)] && !golden.Update() {
			t.Errorf("no fixture with VERDICT: %s", c)
		}
	}
	if !seen["ok"] {
		t.Error("no fixture with VERDICT: ok")
	}
}

// checkVerdict checks what must hold for any verdict on any log.
func checkVerdict(t testing.TB, recs []Record, v Verdict) {
	t.Helper()
	if v.OK != (len(v.Findings) == 0) {
		t.Fatalf("OK = %v with %d findings", v.OK, len(v.Findings))
	}
	if v.OK && v.Title() != "ok" {
		t.Fatalf("OK verdict titled %q", v.Title())
	}
	for i, f := range v.Findings {
		if !slices.Contains(Classes, f.Class) {
			t.Fatalf("finding %d: unknown class %q", i, f.Class)
		}
		if f.Title == "" || strings.Contains(f.Title, "\n") {
			t.Fatalf("finding %d: bad title %q", i, f.Title)
		}
		if f.Line < 0 || f.Line >= len(recs) {
			t.Fatalf("finding %d: Line %d out of range [0,%d)", i, f.Line, len(recs))
		}
		if len(f.Report) == 0 {
			t.Fatalf("finding %d: empty report", i)
		}
		if !slices.Contains(strings.Split(recs[f.Line].Text, "\n"), f.Report[0]) {
			t.Fatalf("finding %d: report starts with %q, not a line of record %d (%q)", i, f.Report[0], f.Line, recs[f.Line].Text)
		}
		if i > 0 && f.Line < v.Findings[i-1].Line {
			t.Fatalf("finding %d: Line %d before the previous finding's %d", i, f.Line, v.Findings[i-1].Line)
		}
		if len(f.Report) > maxReportLines {
			t.Fatalf("finding %d: report of %d lines, more than %d", i, len(f.Report), maxReportLines)
		}
	}
	// Each report is a run of consecutive log lines starting in its record,
	// and the reports do not overlap.
	var flat []line
	for i, r := range recs {
		for l := range strings.SplitSeq(r.Text, "\n") {
			flat = append(flat, line{i, l})
		}
	}
	next := 0
	for i, f := range v.Findings {
		at := -1
		for k := next; k < len(flat) && flat[k].rec <= f.Line && at < 0; k++ {
			if flat[k].rec == f.Line && isRun(flat[k:], f.Report) {
				at = k
			}
		}
		if at < 0 {
			t.Fatalf("finding %d: report %q is not a run of log lines from record %d on, after the previous report", i, f.Report, f.Line)
		}
		next = at + len(f.Report)
	}
}

// isRun reports whether lines starts with the texts of report.
func isRun(lines []line, report []string) bool {
	if len(lines) < len(report) {
		return false
	}
	for j, text := range report {
		if lines[j].text != text {
			return false
		}
	}
	return true
}

// checkRecord checks what holds for every parsed record.
func checkRecord(t testing.TB, r Record) {
	t.Helper()
	if r.Level < -1 || r.Level > 7 || r.Facility < 0 || r.Facility > 0xffff>>3 || r.TS < 0 {
		t.Fatalf("record out of range: %+v", r)
	}
}

// TestReportExtent checks where reports end: at their end marker, and not
// past it.
func TestReportExtent(t *testing.T) {
	tests := []struct {
		fixture     string
		finding     int
		first, last string
	}{
		{"warning-c", 0, "WARNING: samples/hello/hello.c:12 at hello_init+0x15/0x30 [hello], CPU#0: insmod/95", "---[ end trace 0000000000000000 ]---"},
		{"oops-null-deref", 0, "BUG: kernel NULL pointer dereference, address: 0000000000000000", "---[ end trace 0000000000000000 ]---"},
		{"rust-panic", 0, "rust_kernel: panicked at /root/mod/rust_oops.rs:19:9:", "---[ end trace 0000000000000000 ]---"},
		{"rust-panic-kmsg", 0, "rust_kernel: panicked at /root/mod/rust_boom.rs:12:9:", "---[ end trace 0000000000000000 ]---"},
		{"kasan", 0, "BUG: KASAN: slab-out-of-bounds in hello_init+0x6e/0xa0 [hello]", "=================================================================="},
		{"kfence", 0, "BUG: KFENCE: use-after-free read in hello_exit+0x33/0x50 [hello]", "=================================================================="},
		{"ubsan", 0, "UBSAN: array-index-out-of-bounds in /root/mod/hello.c:17:14", "---[ end trace ]---"},
		{"lockdep-circular", 0, "WARNING: possible circular locking dependency detected", " </TASK>"},
		{"hung-task", 0, "INFO: task insmod:106 blocked for more than 122 seconds.", " </TASK>"},
		{"soft-lockup", 0, "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:103]", " </TASK>"},
		{"soft-lockup", 1, "Kernel panic - not syncing: softlockup: hung tasks", "---[ end Kernel panic - not syncing: softlockup: hung tasks ]---"},
		{"warning-panic-on-warn", 0, "WARNING: /root/mod/hello.c:12 at hello_init+0x15/0x30 [hello], CPU#0: insmod/95", "RSP: 0018:ffffc900001cfc80 EFLAGS: 00010246"},
		{"kmemleak", 0, "kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)", "kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.fixture, tt.finding), func(t *testing.T) {
			fx, err := readFixture(filepath.Join(reportDir, tt.fixture))
			if err != nil {
				t.Fatal(err)
			}
			v := Classify(ParseLog(fx.log))
			if len(v.Findings) <= tt.finding {
				t.Fatalf("%d findings, want more than %d", len(v.Findings), tt.finding)
			}
			rep := v.Findings[tt.finding].Report
			if rep[0] != tt.first || rep[len(rep)-1] != tt.last {
				t.Errorf("report runs from %q to %q, want %q to %q", rep[0], rep[len(rep)-1], tt.first, tt.last)
			}
		})
	}
}

func TestClassifyLines(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		class Class // "" for ok
		title string
	}{
		{"empty", nil, "", "ok"},
		{"module text mentioning WARNING is not a WARN", []string{"hello: WARNING: the answer is 42"}, "", "ok"},
		{"out-of-tree taint is ok", []string{
			"hello: loading out-of-tree module taints kernel.",
			"hello: module verification failed: signature and/or required key missing - tainting kernel",
			"Disabling lock debugging due to kernel taint",
		}, "", "ok"},
		{"warn 7.x without file", []string{"WARNING: at hello_init+0x15/0x30 [hello], CPU#0: insmod/95"}, ClassWarning, "WARNING in hello_init"},
		{"warn 7.x with condition", []string{"WARNING: [x > 1 && y] mod/hello.c:12 at hello_init+0x15/0x30 [hello], CPU#1: insmod/95"}, ClassWarning, "WARNING in hello_init (mod/hello.c:12)"},
		{"warn old without file", []string{"WARNING: CPU: 0 PID: 95 at hello_init+0x15/0x30 [hello]"}, ClassWarning, "WARNING in hello_init"},
		{"warn 3.x", []string{"WARNING: at drivers/foo.c:12 hello_init+0x15/0x30 [hello]()"}, ClassWarning, "WARNING in hello_init (drivers/foo.c:12)"},
		{"warn unknown shape", []string{"WARNING: something new"}, ClassWarning, "WARNING: something new"},
		{"lockdep recursive", []string{"WARNING: possible recursive locking detected"}, ClassLockdep, "WARNING: possible recursive locking detected"},
		{"lockdep rcu", []string{"WARNING: suspicious RCU usage"}, ClassLockdep, "WARNING: suspicious RCU usage"},
		{"lockdep inconsistent", []string{"WARNING: inconsistent lock state"}, ClassLockdep, "WARNING: inconsistent lock state"},
		{"lockdep irq order", []string{"WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected"}, ClassLockdep, "WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected"},
		{"oops old", []string{"Oops: 0002 [#1] PREEMPT SMP NOPTI", "RIP: 0010:hello_init+0x12/0x30 [hello]"}, ClassOops, "Oops: 0002 in hello_init [hello]"},
		{"oops invalid opcode alone", []string{"invalid opcode: 0000 [#1] SMP PTI"}, ClassOops, "invalid opcode: 0000"},
		{"arm64 oops", []string{
			"Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000",
			"Internal error: Oops: 0000000096000045 [#1] PREEMPT SMP",
			"pc : hello_init+0x14/0x1000 [hello]",
		}, ClassOops, "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000000 in hello_init [hello]"},
		{"old rust panic format", []string{"rust_kernel: panicked at 'explicit panic', samples/rust/rust_minimal.rs:30:9"}, ClassRustPanic, "Rust panic at samples/rust/rust_minimal.rs:30:9: explicit panic"},
		{"rcu detected stalls", []string{"rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:", "rcu: 	1-...!: (0 ticks this GP)"}, ClassRCUStall, "INFO: rcu_preempt detected stalls on CPUs/tasks"},
		{"rcu expedited", []string{"rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: { 1-... } 21002 jiffies s: 857 root: 0x2/."}, ClassRCUStall, "INFO: rcu_preempt detected expedited stalls on CPUs/tasks"},
		{"old hard lockup", []string{"NMI watchdog: Watchdog detected hard LOCKUP on cpu 1"}, ClassHardLockup, "Watchdog detected hard LOCKUP on cpu 1"},
		{"hung task in I/O wait", []string{"INFO: task kworker/0:1:12 blocked in I/O wait for more than 120 seconds."}, ClassHungTask, "INFO: task kworker/0:1:12 blocked in I/O wait for more than 120 seconds"},
		{"scheduling while atomic", []string{"BUG: scheduling while atomic: insmod/95/0x00000002"}, ClassBug, "BUG: scheduling while atomic: insmod/95/0x00000002"},
		{"license unspecified", []string{"hello: module license 'unspecified' taints kernel."}, ClassTaint, "module hello license 'unspecified' taints the kernel: P (proprietary module was loaded)"},
		{"staging", []string{"r8188eu: module is from the staging directory, the quality is unknown, you have been warned."}, ClassTaint, "module r8188eu taints the kernel: C (staging driver was loaded)"},
		{"build id stripped", []string{"BUG: KASAN: use-after-free in hello_exit+0x33/0x50 [hello 0a1b2c3d4e5f60718293a4b5c6d7e8f901234567]"}, ClassKASAN, "BUG: KASAN: use-after-free in hello_exit [hello]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var recs []Record
			for _, l := range tt.lines {
				recs = append(recs, Record{Level: 4, Text: l})
			}
			v := Classify(recs)
			checkVerdict(t, recs, v)
			if v.Title() != tt.title {
				t.Errorf("title:\n got %q\nwant %q", v.Title(), tt.title)
			}
			if tt.class == "" {
				if !v.OK {
					t.Errorf("got findings %+v, want ok", v.Findings)
				}
				return
			}
			if v.OK || v.Findings[0].Class != tt.class {
				t.Errorf("got %+v, want class %s", v.Findings, tt.class)
			}
		})
	}
}

func TestClassifyDedupesRepeats(t *testing.T) {
	var recs []Record
	for range 3 {
		for _, l := range []string{
			"WARNING: hello.c:12 at hello_tick+0x15/0x30 [hello], CPU#0: swapper/0/0",
			"RIP: 0010:hello_tick+0x15/0x30 [hello]",
			"---[ end trace 0000000000000000 ]---",
		} {
			recs = append(recs, Record{Text: l})
		}
	}
	recs = append(recs, Record{Text: "BUG: scheduling while atomic: insmod/95/0x00000002"})
	v := Classify(recs)
	checkVerdict(t, recs, v)
	if len(v.Findings) != 2 || v.Findings[0].Line != 0 || v.Findings[1].Line != 9 {
		t.Errorf("got %+v, want the first WARNING (line 0) and the BUG (line 9)", v.Findings)
	}
}

func TestClassifyDedupesRepeatedLockups(t *testing.T) {
	var recs []Record
	for _, secs := range []int{22, 48, 74} {
		recs = append(recs,
			Record{Text: fmt.Sprintf("watchdog: BUG: soft lockup - CPU#0 stuck for %ds! [insmod:103]", secs)},
			Record{Text: "RIP: 0010:hello_init+0x11/0x20 [hello]"},
			Record{Text: " </TASK>"})
	}
	v := Classify(recs)
	checkVerdict(t, recs, v)
	if len(v.Findings) != 1 || v.Title() != "BUG: soft lockup - CPU#0 stuck for 22s! [insmod:103] in hello_init [hello]" {
		t.Errorf("got %+v, want the first soft lockup only", v.Findings)
	}
}

func TestVerdictAdd(t *testing.T) {
	v := Classify(nil)
	if !v.OK {
		t.Fatal("empty log not ok")
	}
	if f := JudgeTaint(0, TaintOutOfTree|TaintWarn); f != nil {
		v.Add(*f)
	}
	if v.OK || v.Title() != "kernel taint added: W (kernel issued a warning: a WARN fired)" {
		t.Errorf("after Add: OK %v, title %q", v.OK, v.Title())
	}
}

// FuzzClassify checks, on any log, that parsing and classifying never
// panic, that records and findings are well formed (checkVerdict), and that
// the classifier looks at each byte of the log at most twice: linear time,
// whatever the log holds.
func FuzzClassify(f *testing.F) {
	for _, path := range fixturePaths(f) {
		fx, err := readFixture(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(fx.log)
	}
	f.Add("0,1,2,-;panicked at a:1:2:\\x0a")
	f.Add("WARNING: [ at x+0x1/0x2, CPU#0: a/1\n---[ end trace")
	f.Fuzz(func(t *testing.T, log string) {
		recs := ParseLog(log)
		for _, r := range recs {
			checkRecord(t, r)
		}
		v, examined := classify(recs)
		checkVerdict(t, recs, v)
		if limit := 2 * logSize(recs); examined > limit {
			t.Fatalf("examined %d bytes of a log of %d (limit %d)", examined, logSize(recs), limit)
		}
	})
}

// logSize is the size Classify's work is measured against: the bytes of
// text plus one per line.
func logSize(recs []Record) int {
	n := 0
	for _, r := range recs {
		n += len(r.Text) + 1
	}
	return n
}

// longLog builds a log of n lines: ordinary chatter with a report every
// 1000 lines, and one long stretch of report start lines that nest (the
// worst case for scanning ahead to a report's end).
func longLog(n int) []Record {
	fx, err := readFixture(filepath.Join(reportDir, "oops-null-deref"))
	if err != nil {
		panic(err)
	}
	oops := ParseLog(fx.log)
	recs := make([]Record, 0, n)
	for i := 0; len(recs) < n; i++ {
		switch {
		case i%1000 == 999:
			recs = append(recs, oops...)
		case i%5000 == 4999:
			for range 500 {
				recs = append(recs, Record{Text: "BUG: kernel NULL pointer dereference, address: 0000000000000000"})
			}
		default:
			recs = append(recs, Record{Level: 6, Text: fmt.Sprintf("hello: tick %d, all is well [%d]", i, i*7)})
		}
	}
	return recs[:n]
}

// hostileLogs builds logs of about n lines, each of a shape that makes a
// careless classifier scan too much.
var hostileLogs = []struct {
	name string
	log  func(n int) []Record
}{
	{"chatter with reports", longLog},
	{"unterminated WARNINGs", repeat("WARNING: at hello_init+0x15/0x30 [hello], CPU#0: insmod/95")},
	{"unterminated traces", repeat("------------[ cut here ]------------", "WARNING: x", "RIP: 0010:hello_init+0x12/0x30 [hello]")},
	{"followers only", repeat("BUG: kernel NULL pointer dereference, address: 0000000000000000", "Oops: 0002 [#1] PREEMPT SMP NOPTI")},
	{"panics", repeat("Kernel panic - not syncing: Fatal exception")},
	{"Rust panics", repeat("rust_kernel: panicked at a.rs:1:2:")},
	{"soft lockups", repeat("watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [insmod:103]")},
	{"rule-ended without rule", repeat("BUG: KASAN: slab-out-of-bounds in hello_init+0x6e/0xa0 [hello]", "Read of size 4")},
	{"long lines", func(n int) []Record {
		return repeat("WARNING: "+strings.Repeat("at x+0x1/0x2 [m] ", 4000), strings.Repeat("y", 70_000))(n / 100)
	}},
	{"multi-line records", func(n int) []Record {
		return repeat(strings.Repeat("BUG: unable to handle page fault\n", 50))(n / 50)
	}},
}

// repeat returns a builder of logs of n records cycling through texts.
func repeat(texts ...string) func(n int) []Record {
	return func(n int) []Record {
		recs := make([]Record, n)
		for i := range recs {
			recs[i] = Record{Level: 4, Text: texts[i%len(texts)]}
		}
		return recs
	}
}

// TestClassifyLinear holds the classifier to linear time without timing
// it: on hostile logs of N and 16N lines, the work it does (bytes examined)
// grows as the log does, and never exceeds twice the log's size.
func TestClassifyLinear(t *testing.T) {
	const n = 2_000
	for _, tt := range hostileLogs {
		t.Run(tt.name, func(t *testing.T) {
			small, big := tt.log(n), tt.log(16*n)
			_, ws := classify(small)
			_, wb := classify(big)
			ss, sb := logSize(small), logSize(big)
			if ws > 2*ss || wb > 2*sb {
				t.Errorf("examined %d of %d and %d of %d bytes: more than twice the log", ws, ss, wb, sb)
			}
			// Allow for the ends of the log; work that is not linear grows
			// by a factor near 16 here.
			if float64(wb)/float64(sb) > 1.1*float64(ws)/float64(ss) {
				t.Errorf("work per byte grew from %.3f (N=%d) to %.3f (16N)", float64(ws)/float64(ss), len(small), float64(wb)/float64(sb))
			}
		})
	}
}

// BenchmarkClassify measures ns per line on a typical long log at several
// sizes; scripts/bench.sh classify compares 10k and 160k lines.
func BenchmarkClassify(b *testing.B) {
	for _, n := range []int{10_000, 40_000, 160_000} {
		recs := longLog(n)
		b.Run(fmt.Sprintf("lines=%d", n), func(b *testing.B) {
			for b.Loop() {
				Classify(recs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/line")
		})
	}
}

// BenchmarkClassifyHostile measures the hostile logs at 16,000 lines.
func BenchmarkClassifyHostile(b *testing.B) {
	for _, tt := range hostileLogs {
		recs := tt.log(16_000)
		b.Run(tt.name, func(b *testing.B) {
			for b.Loop() {
				Classify(recs)
			}
		})
	}
}
