package kmsg

import (
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/kmodvm/kmodvm/provision/rustsym"
)

// Class names a kind of problem the kernel reported.
type Class string

// The classes Classify and JudgeTaint report.
const (
	ClassOops       Class = "oops"
	ClassBug        Class = "bug"
	ClassGPF        Class = "gpf"
	ClassWarning    Class = "warning"
	ClassPanic      Class = "panic"
	ClassRustPanic  Class = "rust-panic"
	ClassKASAN      Class = "kasan"
	ClassUBSAN      Class = "ubsan"
	ClassKFENCE     Class = "kfence"
	ClassKmemleak   Class = "kmemleak"
	ClassLockdep    Class = "lockdep"
	ClassSoftLockup Class = "soft-lockup"
	ClassHardLockup Class = "hard-lockup"
	ClassRCUStall   Class = "rcu-stall"
	ClassHungTask   Class = "hung-task"
	ClassTaint      Class = "taint"
)

// Classes lists every class, in the order of the documentation.
var Classes = []Class{
	ClassOops, ClassBug, ClassGPF, ClassWarning, ClassPanic, ClassRustPanic,
	ClassKASAN, ClassUBSAN, ClassKFENCE, ClassKmemleak, ClassLockdep,
	ClassSoftLockup, ClassHardLockup, ClassRCUStall, ClassHungTask, ClassTaint,
}

// Finding is one problem report found in the kernel log.
type Finding struct {
	Class Class `json:"class"`
	// Title is a one-line summary, e.g. "WARNING in hello_init
	// (samples/hello.c:12)" or "BUG: kernel NULL pointer dereference,
	// address: 0000000000000000 in hello_init [hello]".
	Title string `json:"title"`
	// Line is the index, in the records given to Classify, of the record
	// the report starts at; -1 for findings that do not come from the log.
	Line int `json:"line"`
	// Report holds the text of the report's lines, from its first line to
	// its end marker (---[ end trace … ]---, a ==== rule, the end of the
	// stack dump) or a bounded number of lines.
	Report []string `json:"report"`
}

// Verdict is the judgement on a stretch of kernel log.
type Verdict struct {
	OK       bool
	Findings []Finding
}

// Title is a one-line summary of the verdict: "ok" or the first finding's
// title.
func (v Verdict) Title() string {
	if len(v.Findings) == 0 {
		return "ok"
	}
	return v.Findings[0].Title
}

// Add appends a finding (JudgeTaint's, say) and marks the verdict not OK.
func (v *Verdict) Add(f Finding) {
	v.Findings = append(v.Findings, f)
	v.OK = false
}

// How a report's extent is found.
type extent int

const (
	untilEndTrace extent = iota // ---[ end trace … ]---
	untilRule                   // a line of '=' (KASAN, KFENCE)
	untilPanicEnd               // ---[ end Kernel panic … ]---
	untilStackEnd               // </TASK> after the stack dump, or the next report
	oneLine
)

const (
	maxReportLines = 300 // reports with an end marker
	maxOpenLines   = 120 // reports without one
)

type pattern struct {
	class  Class
	lit    string // a substring every match contains: a cheap filter before the regexp
	re     *regexp.Regexp
	extent extent
	// title builds the title; nil means the matched line, tidied.
	title func(m []string, lines []line, start, end int) string
}

// Report start markers, most specific first: lockdep's WARNINGs before the
// WARN() formats, KASAN/KFENCE/soft lockup before the generic "BUG: ".
var patterns = []pattern{
	{class: ClassRustPanic, lit: "panicked at ",
		re:     regexp.MustCompile(`^(?:[\w.-]+: )?panicked at (?:'(.*)', )?(\S+?:\d+:\d+):?\s*(.*)$`),
		extent: untilEndTrace, title: rustPanicTitle},
	{class: ClassKASAN, lit: "BUG: KASAN: ", re: regexp.MustCompile(`^BUG: KASAN: `), extent: untilRule},
	{class: ClassKFENCE, lit: "BUG: KFENCE: ", re: regexp.MustCompile(`^BUG: KFENCE: `), extent: untilRule},
	{class: ClassUBSAN, lit: "UBSAN: ", re: regexp.MustCompile(`^UBSAN: `), extent: untilEndTrace},
	{class: ClassSoftLockup, lit: "BUG: soft lockup",
		re:     regexp.MustCompile(`^(?:watchdog: )?(BUG: soft lockup - CPU#\d+ stuck for \d+s!.*)$`),
		extent: untilStackEnd, title: whereTitle},
	{class: ClassHardLockup, lit: "hard LOCKUP",
		re:     regexp.MustCompile(`(Watchdog detected hard LOCKUP on cpu \d+)`),
		extent: untilStackEnd, title: whereTitle},
	{class: ClassRCUStall, lit: "INFO: rcu_",
		re:     regexp.MustCompile(`^(?:rcu: )?(INFO: rcu_\w+ (?:self-detected stall on CPU|detected (?:expedited )?stalls(?: on (?:CPUs/tasks|tasks))?))`),
		extent: untilStackEnd, title: whereTitle},
	{class: ClassHungTask, lit: "INFO: task ",
		re:     regexp.MustCompile(`^(INFO: task \S+:\d+ blocked.* for more than \d+ seconds)\.?`),
		extent: untilStackEnd, title: whereTitle},
	{class: ClassOops, lit: "BUG: kernel NULL pointer dereference",
		re: regexp.MustCompile(`^(BUG: kernel NULL pointer dereference.*)$`), extent: untilEndTrace, title: whereTitle},
	{class: ClassOops, lit: "BUG: unable to handle ",
		re: regexp.MustCompile(`^(BUG: unable to handle .*)$`), extent: untilEndTrace, title: whereTitle},
	{class: ClassOops, lit: "Unable to handle kernel ",
		re: regexp.MustCompile(`^(Unable to handle kernel .*)$`), extent: untilEndTrace, title: whereTitle},
	{class: ClassBug, lit: "kernel BUG at ",
		re: regexp.MustCompile(`^(kernel BUG at .*)$`), extent: untilEndTrace, title: whereTitle},
	{class: ClassGPF, lit: "general protection fault",
		re:     regexp.MustCompile(`^((?:Oops: )?(?:segment-related )?general protection fault.*?)(?::? [0-9a-f]{4})?(?: \[#\d+\].*)?$`),
		extent: untilEndTrace, title: whereTitle},
	{class: ClassOops, lit: "Internal error: ",
		re: regexp.MustCompile(`^(Internal error: .*?)(?: \[#\d+\].*)?$`), extent: untilEndTrace, title: whereTitle},
	{class: ClassOops, lit: " [#",
		re:     regexp.MustCompile(`^((?:Oops: )?(?:[A-Za-z][\w ,.-]*: )?[0-9a-f]{4,16}) \[#\d+\]`),
		extent: untilEndTrace, title: whereTitle},
	{class: ClassLockdep, lit: "WARNING: ",
		re: regexp.MustCompile(`^WARNING: (?:possible circular locking dependency detected|possible recursive locking detected|` +
			`inconsistent lock state|suspicious RCU usage|possible irq lock inversion dependency detected|` +
			`bad unlock balance detected!|held lock freed!|lock held when returning to user space!|` +
			`Nested lock was not taken|bad contention detected!|chain_key collision|` +
			`\S+-safe -> \S+-unsafe lock order detected|\S+/\d+ still has locks held!|lock held at task exit time!)`),
		extent: untilStackEnd, title: lockdepTitle},
	{class: ClassLockdep, lit: "INFO: trying to register non-static key",
		re: regexp.MustCompile(`^INFO: trying to register non-static key`), extent: untilStackEnd, title: lockdepTitle},
	// WARN(), 6.19+/7.x: "WARNING: [cond] file:line at func+0x1/0x2 [mod], CPU#0: comm/pid"
	{class: ClassWarning, lit: "WARNING: ",
		re:     regexp.MustCompile(`^WARNING: (?:(?:\[.*\] )?(\S+):(\d+) )?at (\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: \[([^\]]+)\])?, CPU#\d+: `),
		extent: untilEndTrace, title: warnTitle},
	// WARN(), older: "WARNING: CPU: 0 PID: 95 at file:line func+0x1/0x2 [mod]"
	{class: ClassWarning, lit: "WARNING: ",
		re:     regexp.MustCompile(`^WARNING: (?:CPU: \d+ PID: \d+ )?at (?:(\S+):(\d+) )?(\S+?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?: ?\[([^\]]+)\])?(?:\(\))?\s*$`),
		extent: untilEndTrace, title: warnTitle},
	{class: ClassWarning, lit: "WARNING: ", re: regexp.MustCompile(`^WARNING: `), extent: untilEndTrace},
	{class: ClassPanic, lit: "Kernel panic - not syncing", re: regexp.MustCompile(`^Kernel panic - not syncing`), extent: untilPanicEnd},
	{class: ClassKmemleak, lit: "kmemleak: ",
		re: regexp.MustCompile(`^kmemleak: \d+ new suspected memory leaks?`), extent: oneLine},
	{class: ClassTaint, lit: "module license ",
		re: regexp.MustCompile(`^(\S+): module license (?:'(.*)' )?taints kernel`), extent: oneLine, title: licenseTitle},
	{class: ClassTaint, lit: "staging directory",
		re: regexp.MustCompile(`^(\S+): module is from the staging directory`), extent: oneLine,
		title: func(m []string, _ []line, _, _ int) string {
			return "module " + m[1] + " taints the kernel: " + TaintFlag('C').Describe()
		}},
	{class: ClassTaint, lit: "loading test module",
		re: regexp.MustCompile(`^(\S+): loading test module taints kernel`), extent: oneLine,
		title: func(m []string, _ []line, _, _ int) string {
			return "module " + m[1] + " taints the kernel: " + TaintFlag('N').Describe()
		}},
	{class: ClassBug, lit: "BUG: ", re: regexp.MustCompile(`^(BUG: .*)$`), extent: untilStackEnd, title: whereTitle},
}

// TaintFlag returns the taint bit of a flag letter ('W'), or 0.
func TaintFlag(letter byte) Taint {
	if bit := taintBit(letter); bit >= 0 {
		return 1 << bit
	}
	return 0
}

// followers are classes whose start lines belong to the report before them
// (the Oops after "BUG: kernel NULL pointer dereference", the kernel BUG a
// Rust panic ends in) until that report's end marker.
func isFollower(c Class) bool {
	return c == ClassOops || c == ClassBug || c == ClassGPF
}

// line is one line of log text and the record it came from.
type line struct {
	rec  int
	text string
}

// Classify finds the problem reports in kernel log records. It runs in time
// linear in the size of the log: every line is matched against the report
// patterns at most twice (once while looking for the end of the report
// before it, once as a possible start), and scanning resumes after each
// report.
func Classify(records []Record) Verdict {
	v, _ := classify(records)
	return v
}

// classify is Classify, also returning the work done: the bytes of log text
// (plus one per line) examined for report starts and ends. Tests hold it to
// at most twice the size of the log.
func classify(records []Record) (Verdict, int) {
	examined := 0
	lines := make([]line, 0, len(records))
	for i, r := range records {
		if !strings.Contains(r.Text, "\n") {
			lines = append(lines, line{i, r.Text})
			continue
		}
		for t := range strings.SplitSeq(r.Text, "\n") {
			lines = append(lines, line{i, t})
		}
	}

	v := Verdict{OK: true}
	seen := make(map[string]bool)
	for i := 0; i < len(lines); {
		examined += len(lines[i].text) + 1
		p, m := match(lines[i].text)
		if p == nil {
			i++
			continue
		}
		end := reportEnd(lines, i, p, &examined)
		f := Finding{Class: p.class, Line: lines[i].rec, Report: make([]string, 0, end-i)}
		for _, l := range lines[i:end] {
			f.Report = append(f.Report, l.text)
		}
		if p.title != nil {
			f.Title = p.title(m, lines, i, end)
		} else {
			f.Title = lines[i].text
		}
		f.Title = tidy(f.Title)
		if key := dedupeKey(f); !seen[key] {
			seen[key] = true
			v.Add(f)
		}
		i = end
	}
	return v, examined
}

var digitsRE = regexp.MustCompile(`[0-9]+`)

// dedupeKey identifies a finding for dropping repeats. A stuck module
// repeats its soft lockup every few seconds, each time with a longer
// "stuck for Ns"; those count as one.
func dedupeKey(f Finding) string {
	t := f.Title
	switch f.Class {
	case ClassSoftLockup, ClassHardLockup, ClassHungTask, ClassRCUStall, ClassKmemleak:
		t = digitsRE.ReplaceAllString(t, "N")
	}
	return string(f.Class) + "\x00" + t
}

func match(text string) (*pattern, []string) {
	for i := range patterns {
		p := &patterns[i]
		if !strings.Contains(text, p.lit) {
			continue
		}
		if m := p.re.FindStringSubmatch(text); m != nil {
			return p, m
		}
	}
	return nil, nil
}

// reportEnd returns the index after the last line of the report starting
// at lines[start], adding the lines it looks at to *examined.
func reportEnd(lines []line, start int, p *pattern, examined *int) int {
	if p.extent == oneLine {
		return start + 1
	}
	limit := maxReportLines
	if p.extent == untilStackEnd {
		limit = maxOpenLines
	}
	limit = min(len(lines), start+limit)
	for j := start + 1; j < limit; j++ {
		t := lines[j].text
		*examined += len(t) + 1
		switch p.extent {
		case untilEndTrace:
			if strings.HasPrefix(t, "---[ end trace") {
				return j + 1
			}
		case untilRule:
			if len(t) >= 20 && strings.Trim(t, "=") == "" {
				return j + 1
			}
		case untilPanicEnd:
			if strings.HasPrefix(t, "---[ end Kernel panic") {
				return j + 1
			}
			continue // nothing else ends a panic: the kernel is dead
		case untilStackEnd:
			if strings.TrimSpace(t) == "</TASK>" {
				return j + 1
			}
		}
		if q, _ := match(t); q != nil {
			if p.extent == untilStackEnd || !isFollower(q.class) {
				return j
			}
		}
	}
	return limit
}

var (
	offsetRE   = regexp.MustCompile(`\+0x[0-9a-f]+/0x[0-9a-f]+`)
	buildIDRE  = regexp.MustCompile(`\[(\w+) [0-9a-f]{16,}\]`)
	ripRE      = regexp.MustCompile(`^(?:RIP: [0-9a-f]{4}:|pc : |epc : |NIP \[[0-9a-f]+\] )([\w.$]+)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)(?: \[([^\]]+)\])?`)
	modFrameRE = regexp.MustCompile(`^\s*([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+ \[([^\]]+)\]`)
	lockAtRE   = regexp.MustCompile(`, at: ([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[([^\]]+)\])?`)
)

// tidy drops code offsets and build ids from a title and demangles Rust
// symbols: "hello_init+0x15/0x30 [hello 1234…]" -> "hello_init [hello]".
func tidy(s string) string {
	s = offsetRE.ReplaceAllString(s, "")
	s = buildIDRE.ReplaceAllString(s, "[$1]")
	return strings.TrimSpace(rustsym.DemangleText(s))
}

func funcWithModule(fn, mod string) string {
	if mod != "" {
		mod, _, _ = strings.Cut(mod, " ") // build id
		return fn + " [" + mod + "]"
	}
	return fn
}

// where finds the function a report points at: the RIP (pc on arm64) if
// the report has registers, else the first stack frame inside a module.
func where(lines []line, start, end int) string {
	for _, l := range lines[start:end] {
		if m := ripRE.FindStringSubmatch(l.text); m != nil && !strings.HasPrefix(m[1], "0x") {
			return funcWithModule(m[1], m[2])
		}
	}
	for _, l := range lines[start:end] {
		if strings.HasPrefix(strings.TrimSpace(l.text), "?") {
			continue // unreliable frame
		}
		if m := modFrameRE.FindStringSubmatch(l.text); m != nil {
			return funcWithModule(m[1], m[2])
		}
	}
	return ""
}

// whereTitle: the first submatch (the matched line, trimmed of noise such
// as " [#1] SMP NOPTI") plus " in FUNC [module]".
func whereTitle(m []string, lines []line, start, end int) string {
	t := m[0]
	if len(m) > 1 && m[1] != "" {
		t = m[1]
	}
	if w := where(lines, start, end); w != "" {
		t += " in " + w
	}
	return t
}

func warnTitle(m []string, lines []line, start, end int) string {
	file, num, fn := m[1], m[2], m[3]
	t := "WARNING in " + fn
	if file != "" {
		t += " (" + file + ":" + num + ")"
	}
	return t
}

func lockdepTitle(m []string, lines []line, start, end int) string {
	t := strings.TrimRight(lines[start].text, ". ")
	for _, l := range lines[start:end] {
		if a := lockAtRE.FindStringSubmatch(l.text); a != nil {
			return t + " in " + funcWithModule(a[1], a[2])
		}
	}
	if w := where(lines, start, end); w != "" {
		t += " in " + w
	}
	return t
}

const maxTitleMessage = 160

func rustPanicTitle(m []string, lines []line, start, end int) string {
	msg, loc, rest := m[1], m[2], m[3]
	if msg == "" {
		msg = rest
	}
	if msg == "" && start+1 < len(lines) {
		// Rust ≥ 1.73: "panicked at file:line:col:" and the message on the
		// next line.
		next := lines[start+1].text
		if !strings.HasPrefix(next, "------------[ cut here ]") && !strings.HasPrefix(next, "kernel BUG at") {
			msg = next
		}
	}
	msg = strings.TrimSpace(msg)
	if len(msg) > maxTitleMessage {
		n := maxTitleMessage
		for n > 0 && !utf8.RuneStart(msg[n]) {
			n--
		}
		msg = msg[:n] + "…"
	}
	t := "Rust panic at " + loc
	if msg != "" {
		t += ": " + msg
	}
	return t
}

func licenseTitle(m []string, _ []line, _, _ int) string {
	lic := "unspecified"
	if m[2] != "" {
		lic = "'" + m[2] + "'"
	}
	return "module " + m[1] + " license " + lic + " taints the kernel: " + TaintProprietary.Describe()
}
