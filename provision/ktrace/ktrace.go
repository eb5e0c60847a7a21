// Package ktrace reads the crash reports in a kernel log — oopses, BUGs,
// WARNINGs, panics, Rust panics, hung tasks, KUnit faults — into their
// frames and the source locations the kernel names, demangles Rust symbols,
// and, given a Symbolizer and a Mapper, puts a host file:line on each frame.
package ktrace

import (
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/rustsym"
)

// Trace is one crash report.
type Trace struct {
	// Kind is the kmsg class of the report ("oops", "rust-panic", …), or
	// KindKUnitFault for a KUnit fault the log shows no report for.
	Kind  string `json:"kind"`
	Title string `json:"title"`
	// Record is the index, in the records given to Parse, of the record the
	// report starts at.
	Record int `json:"record"`
	// Message is what the report says happened beyond its title line: a
	// Rust panic's message, the reason given to panic().
	Message string `json:"message,omitempty"`
	Comm    string `json:"comm,omitempty"`
	PID     int    `json:"pid,omitempty"`
	// RIP is the function the CPU was in (pc on arm64), when the report has
	// registers and the kernel could name it.
	RIP    *Frame  `json:"rip,omitempty"`
	Frames []Frame `json:"frames"`
	// Modules lists the modules loaded at the time ("Modules linked in").
	Modules   []string   `json:"modules,omitempty"`
	Locations []Location `json:"locations,omitempty"`
	// KUnitTest is the KUnit test function that was running, when the trace
	// or KUnit's fault line shows it.
	KUnitTest string `json:"kunit_test,omitempty"`
}

// KindKUnitFault is the kind of a trace made from a KUnit "try faulted" line alone.
const KindKUnitFault = "kunit-fault"

// Location is a source location the kernel printed itself.
type Location struct {
	// Kind says which line named it: "panic" (Rust's "panicked at"),
	// "bug" ("kernel BUG at"), "warning" (WARN's file:line) or "kunit"
	// (KUnit's "last line seen").
	Kind string `json:"kind"`
	// File, Line and Col are as printed: relative to the module's build
	// directory, to the kernel tree, or absolute in the guest.
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col,omitempty"`
	// Host is the file on the host, when the Mapper found it there.
	Host string `json:"host,omitempty"`
}

var (
	frameHeaderRE = regexp.MustCompile(`^\s*Call [Tt]race:\s*$`)
	ripLineRE     = regexp.MustCompile(`^\s*(?:RIP: [0-9a-f]{4}:|pc : |epc : |NIP \[[0-9a-f]+\] )(.*)$`)
	commRE        = regexp.MustCompile(`^CPU: \d+ (?:UID: \d+ )?PID: (\d+) Comm: (\S+)`)
	modulesRE     = regexp.MustCompile(`^Modules linked in:(.*)$`)
	// WARN(), 6.19+: "WARNING: [cond] file:line at func+0x1/0x2 [mod], CPU#0: comm/pid";
	// older: "WARNING: CPU: 0 PID: 95 at file:line func+0x1/0x2 [mod]".
	warnNewRE = regexp.MustCompile(`^WARNING: (?:\[.*\] )?(\S+):(\d+) at \S+`)
	warnOldRE = regexp.MustCompile(`^WARNING: (?:CPU: \d+ PID: \d+ )?at (\S+):(\d+) \S+`)
	bugAtRE   = regexp.MustCompile(`^kernel BUG at (\S+):(\d+)!`)
	// Rust ≥ 1.73: "panicked at file:line:col:" and the message on the next
	// line(s); older: "panicked at 'message', file:line:col".
	panicAtRE    = regexp.MustCompile(`^(?:[\w.-]+: )?panicked at (?:'(.*)', )?(\S+?):(\d+):(\d+):?\s*(.*)$`)
	kernelPanic  = regexp.MustCompile(`^Kernel panic - not syncing: (.*)$`)
	tryFaultedRE = regexp.MustCompile(`^\s*# (\S+): try faulted: last line seen (\S+):(\d+)`)
)

// kunitFaultWindow is how many lines after a report KUnit's "try faulted"
// line may come and still belong to it: the thread's exit notes and the
// rest of the register dump come between.
const kunitFaultWindow = 40

// Parse finds the crash reports in kernel log records. kmsg.Classify says
// where each report starts and ends; Parse reads the frames and locations
// out of it. Reports without a stack (taint, kmemleak's one-line summary)
// give no trace.
func Parse(records []kmsg.Record) []Trace {
	lines := splitLines(records)
	v := kmsg.Classify(records)
	var traces []Trace
	var spans []span
	for _, f := range v.Findings {
		if f.Class == kmsg.ClassTaint || f.Class == kmsg.ClassKmemleak || f.Line < 0 || len(f.Report) == 0 {
			continue
		}
		t := Trace{Kind: string(f.Class), Title: f.Title, Record: f.Line, Frames: []Frame{}}
		t.read(f.Report)
		traces = append(traces, t)
		spans = append(spans, reportSpan(lines, f))
	}
	return addKUnitFaults(traces, spans, lines)
}

// span is where a report lies in the log's lines: [start, end).
type span struct{ start, end int }

// reportSpan finds the lines of a finding's report: it starts at the line
// of its first record that holds its first line.
func reportSpan(lines []line, f kmsg.Finding) span {
	i := sort.Search(len(lines), func(i int) bool { return lines[i].rec >= f.Line })
	for j := i; j < len(lines) && lines[j].rec == f.Line; j++ {
		if lines[j].text == f.Report[0] {
			i = j
			break
		}
	}
	return span{i, i + len(f.Report)}
}

// addKUnitFaults adds KUnit's "try faulted" lines to the report they
// follow, or makes a trace of their own when no report comes just before.
func addKUnitFaults(traces []Trace, spans []span, lines []line) []Trace {
	var out []Trace
	var outSpans []span
	next := 0 // traces[:next] are in out
	for i, l := range lines {
		if !strings.Contains(l.text, "try faulted") {
			continue
		}
		m := tryFaultedRE.FindStringSubmatch(l.text)
		if m == nil {
			continue
		}
		for next < len(traces) && spans[next].start <= i {
			out, outSpans = append(out, traces[next]), append(outSpans, spans[next])
			next++
		}
		loc := Location{Kind: "kunit", File: m[2]}
		loc.Line, _ = strconv.Atoi(m[3])
		if k := len(out) - 1; k >= 0 && out[k].Kind != KindKUnitFault && i < outSpans[k].end+kunitFaultWindow {
			out[k].Locations = append(out[k].Locations, loc)
			out[k].KUnitTest = m[1]
			continue
		}
		out = append(out, Trace{
			Kind:      KindKUnitFault,
			Title:     "KUnit test " + m[1] + " faulted at " + m[2] + ":" + m[3],
			Record:    l.rec,
			Frames:    []Frame{},
			Locations: []Location{loc},
			KUnitTest: m[1],
		})
		outSpans = append(outSpans, span{i, i + 1})
	}
	return append(out, traces[next:]...)
}

// line is one line of log text and the record it came from.
type line struct {
	rec  int
	text string
}

func splitLines(records []kmsg.Record) []line {
	var lines []line
	for i, r := range records {
		for t := range strings.SplitSeq(r.Text, "\n") {
			lines = append(lines, line{i, t})
		}
	}
	return lines
}

// read fills the trace from the lines of its report.
func (t *Trace) read(report []string) {
	inStack, stackDone := false, false
	for i, l := range report {
		text := strings.TrimSpace(l)
		switch {
		case frameHeaderRE.MatchString(l):
			// A report may hold more than one stack (lockdep prints one
			// per lock); the first is where it happened.
			inStack = !stackDone
			continue
		case inStack:
			if f, ok := ParseFrame(l); ok {
				t.Frames = append(t.Frames, f)
				continue
			}
			if text == "</TASK>" || text == "" {
				inStack, stackDone = false, true
			}
			// <TASK>, <IRQ>, the user registers inside the task: not frames.
			continue
		}
		if t.RIP == nil {
			if m := ripLineRE.FindStringSubmatch(l); m != nil {
				if f, ok := ParseFrame(m[1]); ok && f.Func != "" {
					t.RIP = &f
				}
				continue
			}
		}
		if t.Comm == "" {
			if m := commRE.FindStringSubmatch(text); m != nil {
				t.PID, _ = strconv.Atoi(m[1])
				t.Comm = m[2]
				continue
			}
		}
		if t.Modules == nil {
			if m := modulesRE.FindStringSubmatch(text); m != nil {
				t.Modules = parseModules(m[1])
				continue
			}
		}
		t.readLocation(text, report[i+1:])
	}
	if name := KUnitTestName(t.Frames); name != "" {
		t.KUnitTest = name
	}
}

// readLocation records a source location the line names, and the message
// that goes with it.
func (t *Trace) readLocation(text string, after []string) {
	if m := panicAtRE.FindStringSubmatch(text); m != nil {
		t.addLocation("panic", m[2], m[3], m[4])
		msg := m[1]
		if msg == "" {
			msg = m[5]
		}
		if msg == "" && len(after) > 0 && !isReportLine(after[0]) {
			msg = after[0]
		}
		t.setMessage(msg)
		return
	}
	if m := bugAtRE.FindStringSubmatch(text); m != nil {
		t.addLocation("bug", m[1], m[2], "")
		return
	}
	if m := warnNewRE.FindStringSubmatch(text); m != nil {
		t.addLocation("warning", m[1], m[2], "")
		return
	}
	if m := warnOldRE.FindStringSubmatch(text); m != nil {
		t.addLocation("warning", m[1], m[2], "")
		return
	}
	if m := kernelPanic.FindStringSubmatch(text); m != nil {
		t.setMessage(m[1])
	}
}

// isReportLine says whether a line after "panicked at file:line:col:" is
// the kernel's next report line rather than the panic's message.
func isReportLine(s string) bool {
	s = strings.TrimSpace(s)
	return s == "" || strings.HasPrefix(s, "------------[ cut here ]") || strings.HasPrefix(s, "kernel BUG at")
}

func (t *Trace) setMessage(msg string) {
	if msg = strings.TrimSpace(msg); msg != "" && t.Message == "" {
		t.Message = rustsym.DemangleText(msg)
	}
}

func (t *Trace) addLocation(kind, file, lineNum, col string) {
	l := Location{Kind: kind, File: file}
	l.Line, _ = strconv.Atoi(lineNum)
	if col != "" {
		l.Col, _ = strconv.Atoi(col)
	}
	t.Locations = append(t.Locations, l)
}

// parseModules reads "rust_oops(OE+) hello(O) [last unloaded: kunit_rust(O)]"
// into the names of the loaded modules.
func parseModules(s string) []string {
	s, _, _ = strings.Cut(s, "[last unloaded")
	mods := []string{}
	for f := range strings.FieldsSeq(s) {
		name, _, _ := strings.Cut(f, "(")
		if name != "" {
			mods = append(mods, name)
		}
	}
	return mods
}
