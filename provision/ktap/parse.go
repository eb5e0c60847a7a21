package ktap

import (
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxSynthesized bounds the crashed entries made up for tests that never reported, over
// one parse: a plan line is only a number, and "1..999999999" must not allocate that many.
const maxSynthesized = 1 << 16

// minDiagIndent is the least indentation of a line that is no KTAP line but is taken as
// a test's diagnostic. KUnit indents what it prints for a test ("    Expected x == y,
// but"); other drivers and the oops printer write at column 0 or 1 (" <TASK>").
const minDiagIndent = 2

// logLine is a log line kept for later: its place in the log orders diagnostics and
// crash lines.
type logLine struct {
	idx  int
	text string
	at   time.Duration
	base int // columns of KTAP indentation to remove when shown as a diagnostic
}

// node is a KTAP document (a suite, a parameterized test, a top-level document) or a
// result line (a test).
type node struct {
	parent      *node
	indent      int  // of the document's header lines
	childIndent int  // of its children's result lines; -1 until the first one
	byVersion   bool // opened by a version line: a "# Subtest:" line right after names it
	named       bool
	name        string
	planned     int
	kids        []*node

	topLevel bool // a document of suites, which has no result line of its own
	cut      bool // the document ended without its result line
	status   Status
	number   int
	reason   string
	diags    []logLine
	pending  []logLine // diagnostics waiting for the next result line

	startAt  time.Duration
	lastAt   time.Duration // of the last header or child result line: where the next child starts
	lastIdx  int           // index of the last KTAP line of this document
	duration time.Duration
}

type parser struct {
	root        *node
	stack       []*node // stack[0] is root
	noise       []logLine
	claimed     int // noise[:claimed] went to a crashed test already
	lastAt      time.Duration
	synthesized int
}

// ParseLines parses the lines of a kernel log; it never fails: what is not KTAP is kept
// in Result.Lines, and what the log never finished is reported as crashed.
func ParseLines(lines []Line) Result {
	root := &node{childIndent: 0, planned: -1, lastIdx: -1}
	p := &parser{root: root, stack: []*node{root}}
	for i, l := range lines {
		p.line(i, l)
	}
	for len(p.stack) > 1 {
		p.cut(p.top())
	}
	return p.finish()
}

func (p *parser) top() *node { return p.stack[len(p.stack)-1] }

func (p *parser) pop() { p.stack = p.stack[:len(p.stack)-1] }

func (p *parser) line(i int, l Line) {
	c := classify(l.Text)
	ll := logLine{idx: i, text: strings.TrimRight(l.Text, " \t\r\n"), at: l.At}
	if l.At != 0 {
		p.lastAt = l.At
	}
	switch c.kind {
	case versionLine:
		p.closeFrom(c.indent)
		p.open(c, ll, true)
	case subtestLine:
		t := p.top()
		if t != p.root && t.byVersion && !t.named && t.indent == c.indent && t.planned < 0 && len(t.kids) == 0 {
			t.named, t.name = true, c.name
			p.header(t, ll)
			return
		}
		p.closeFrom(c.indent)
		n := p.open(c, ll, false)
		n.named, n.name = true, c.name
	case planLine:
		t := p.top()
		if t != p.root && t.planned < 0 && len(t.kids) == 0 {
			t.planned = c.n
			p.header(t, ll)
			return
		}
		p.other(c, ll)
	case resultLine:
		p.result(c, ll)
	case diagLine:
		t := p.top()
		ll.base = p.effChildIndent(t)
		t.pending = append(t.pending, ll)
	default:
		p.other(c, ll)
	}
}

// other files a line that is no KTAP line: indented inside a document it is what the
// running test printed, otherwise it is the rest of the kernel log.
func (p *parser) other(c line, ll logLine) {
	t := p.top()
	if t != p.root && c.indent >= minDiagIndent {
		ll.base = p.effChildIndent(t)
		t.pending = append(t.pending, ll)
		return
	}
	p.noise = append(p.noise, ll)
}

// header records a header line of document t: what came before it is t's own.
func (p *parser) header(t *node, ll logLine) {
	t.diags = append(t.diags, t.pending...)
	t.pending = nil
	t.lastIdx = ll.idx
	t.lastAt = ll.at
}

// closeFrom ends the open documents a new document at indent d cannot be nested in:
// they stopped without their result line.
func (p *parser) closeFrom(d int) {
	for t := p.top(); t != p.root && t.indent >= d; t = p.top() {
		p.cut(t)
	}
}

func (p *parser) open(c line, ll logLine, byVersion bool) *node {
	parent := p.top()
	n := &node{
		parent: parent, indent: c.indent, childIndent: -1, byVersion: byVersion, planned: -1,
		startAt: ll.at, lastAt: ll.at, lastIdx: ll.idx,
	}
	n.diags, parent.pending = parent.pending, nil
	p.stack = append(p.stack, n)
	return n
}

// effChildIndent is where the result lines of t's children are, or are expected.
func (p *parser) effChildIndent(t *node) int {
	if t == p.root {
		return 0
	}
	if t.childIndent >= 0 {
		return t.childIndent
	}
	return t.indent
}

// result places a result line: it is either a child of the innermost open document or,
// less indented than that document's children, the document's own result. Documents
// between are ones the log cut short.
func (p *parser) result(c line, ll logLine) {
	for {
		t := p.top()
		if t == p.root {
			p.leaf(t, c, ll)
			return
		}
		closes := c.indent < p.effChildIndent(t)
		// Without indentation (TAP-14 style output written flat) a document ends at
		// the result line bearing its name once its plan is complete, as in kunit.py.
		if !closes && c.indent == t.indent && t.indent == p.effChildIndent(t.parent) &&
			t.named && c.name == t.name && len(t.kids) > 0 && (t.planned < 0 || len(t.kids) >= t.planned) {
			closes = true
		}
		if !closes {
			p.leaf(t, c, ll)
			return
		}
		if t.parent == p.root || c.indent >= p.effChildIndent(t.parent) {
			p.close(t, c, ll)
			return
		}
		p.cut(t)
	}
}

func (p *parser) leaf(t *node, c line, ll logLine) {
	if t != p.root && t.childIndent < 0 {
		t.childIndent = c.indent
	}
	n := &node{parent: t, indent: c.indent, childIndent: -1, planned: -1, name: c.name}
	setResult(n, c, len(t.kids)+1)
	n.diags, t.pending = t.pending, nil
	n.duration = since(t.lastAt, ll.at)
	t.kids = append(t.kids, n)
	t.lastIdx, t.lastAt = ll.idx, ll.at
}

func setResult(n *node, c line, position int) {
	n.number = c.n
	if n.number <= 0 {
		n.number = position
	}
	if reason, ok := skipReason(c.directive); ok {
		n.status, n.reason = Skip, reason
		return
	}
	n.reason = c.directive
	if c.ok {
		n.status = Pass
	} else {
		n.status = Fail
	}
}

// close ends document t with its result line.
func (p *parser) close(t *node, c line, ll logLine) {
	p.pop()
	par := t.parent
	if c.name != "" || !t.named {
		// kunit.py names a test after its result line; the header only says the same.
		t.name = c.name
	}
	setResult(t, c, len(par.kids)+1)
	t.diags = append(t.diags, t.pending...)
	t.pending = nil
	if t.planned > len(t.kids) {
		// Closed, yet fewer results than planned: kunit.py counts the missing ones as
		// crashed, and so do we.
		p.synthesize(t, t.planned-len(t.kids))
	}
	for _, k := range t.kids {
		if k.status == Crashed {
			t.status = Crashed
			if t.reason == "" {
				t.reason = ReasonSubtestCrashed
			}
			break
		}
	}
	t.duration = since(t.startAt, ll.at)
	if par != p.root && par.childIndent < 0 {
		par.childIndent = c.indent
	}
	t.diags = append(append([]logLine(nil), par.pending...), t.diags...)
	par.pending = nil
	par.kids = append(par.kids, t)
	par.lastIdx, par.lastAt = ll.idx, ll.at
}

// cut ends document t, which the log left without its result line: the kernel crashed
// or hung, or the log ends. A top-level document has no result line; it is complete when
// it holds as many suites as its plan says.
func (p *parser) cut(t *node) {
	p.pop()
	par := t.parent
	t.cut = true
	if par == p.root && !t.named && t.indent == 0 {
		t.topLevel = true
		running := !lastCut(t)
		if first := p.synthesize(t, t.planned-len(t.kids)); first != nil && running {
			first.diags = merge(t.pending, p.claim(t.lastIdx))
			first.duration = since(t.lastAt, p.lastAt)
			t.pending = nil
		}
		t.diags = append(t.diags, t.pending...)
		t.pending = nil
		par.kids = append(par.kids, t)
		return
	}
	t.status, t.reason = Crashed, ReasonCutShort
	t.number = len(par.kids) + 1
	if !t.named {
		t.name = "#" + strconv.Itoa(t.number)
	}
	running := !lastCut(t)
	missing := t.planned - len(t.kids)
	if t.planned < 0 && running {
		// No plan: one test was running when the log stopped, unless that was a
		// nested document, cut itself.
		missing = 1
	}
	first := p.synthesize(t, missing)
	crash := merge(t.pending, p.claim(t.lastIdx))
	t.pending = nil
	if first != nil && running {
		first.diags = crash
		first.duration = since(t.lastAt, p.lastAt)
	} else {
		t.diags = append(t.diags, crash...)
	}
	t.duration = since(t.startAt, p.lastAt)
	par.kids = append(par.kids, t)
}

// lastCut reports whether t's last child is a document that was cut short: that one
// was running when the log stopped, and it holds the crash.
func lastCut(t *node) bool {
	n := len(t.kids)
	return n > 0 && t.kids[n-1].cut
}

// synthesize appends n crashed entries for the tests of t that never reported and
// returns the first, or nil.
func (p *parser) synthesize(t *node, n int) *node {
	var first *node
	for ; n > 0 && p.synthesized < maxSynthesized; n-- {
		p.synthesized++
		num := len(t.kids) + 1
		k := &node{
			parent: t, childIndent: -1, planned: -1, cut: true,
			name: "#" + strconv.Itoa(num), number: num, status: Crashed, reason: ReasonNeverReported,
		}
		t.kids = append(t.kids, k)
		if first == nil {
			first = k
		}
	}
	return first
}

// claim returns the kernel's lines after index after that no crashed test holds yet:
// the oops that cut a document short follows its last KTAP line.
func (p *parser) claim(after int) []logLine {
	start := sort.Search(len(p.noise), func(i int) bool { return p.noise[i].idx > after })
	if start < p.claimed {
		start = p.claimed
	}
	out := append([]logLine(nil), p.noise[start:]...)
	p.claimed = len(p.noise)
	return out
}

func merge(a, b []logLine) []logLine {
	out := make([]logLine, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if a[0].idx <= b[0].idx {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return append(append(out, a...), b...)
}

func since(from, to time.Duration) time.Duration {
	if from == 0 || to == 0 || to < from {
		return 0
	}
	return to - from
}

func (p *parser) finish() Result {
	r := Result{Suites: []Suite{}}
	loose := append([]logLine(nil), p.noise...)
	for _, k := range p.root.kids {
		if !k.topLevel {
			r.Suites = append(r.Suites, suiteOf(k))
			continue
		}
		for _, s := range k.kids {
			r.Suites = append(r.Suites, suiteOf(s))
		}
		loose = append(loose, k.diags...)
	}
	loose = append(loose, p.root.pending...)
	sort.SliceStable(loose, func(i, j int) bool { return loose[i].idx < loose[j].idx })
	for _, l := range loose {
		r.Lines = append(r.Lines, Line{Text: l.text, At: l.at})
	}
	return r
}

func suiteOf(n *node) Suite {
	return Suite{
		Name:        n.name,
		Status:      n.status,
		Reason:      n.reason,
		Tests:       testsOf(n.kids),
		Planned:     n.planned,
		Diagnostics: texts(n.diags),
		Duration:    n.duration,
	}
}

func testsOf(kids []*node) []Test {
	if len(kids) == 0 {
		return nil
	}
	tests := make([]Test, 0, len(kids))
	for _, k := range kids {
		tests = append(tests, Test{
			Name:        k.name,
			Number:      k.number,
			Status:      k.status,
			Reason:      k.reason,
			Diagnostics: texts(k.diags),
			Duration:    k.duration,
			Subtests:    testsOf(k.kids),
		})
	}
	return tests
}

// texts returns the lines without the indentation of the document they were printed
// in. KUnit prints a parameter's diagnostics one level out from its result line, so a
// run of consecutive lines loses no more than the least indented of them has.
func texts(lines []logLine) []string {
	if len(lines) == 0 {
		return nil
	}
	out := make([]string, 0, len(lines))
	for start := 0; start < len(lines); {
		end := start + 1
		for end < len(lines) && lines[end].base > 0 && lines[start].base > 0 && lines[end].idx == lines[end-1].idx+1 {
			end++
		}
		least := -1
		for _, l := range lines[start:end] {
			if strings.TrimSpace(l.text) == "" {
				continue
			}
			if w := indentWidth(l.text); least < 0 || w < least {
				least = w
			}
		}
		for _, l := range lines[start:end] {
			out = append(out, dedent(l.text, min(l.base, least)))
		}
		start = end
	}
	return out
}
