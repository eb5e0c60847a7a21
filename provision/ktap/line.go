package ktap

import (
	"strconv"
	"strings"
)

type kind int

const (
	unknownLine kind = iota
	versionLine      // "KTAP version 1", "TAP version 14"
	subtestLine      // "# Subtest: name"
	planLine         // "1..N"
	resultLine       // "ok N name # directive"
	diagLine         // "# anything"
)

// line is one log line classified by its KTAP role.
type line struct {
	kind   kind
	indent int    // columns of leading whitespace, a tab to the next multiple of 4
	body   string // the text without indentation and trailing whitespace

	n         int    // plan count; result number (0 if not a positive int)
	ok        bool   // result: "ok" rather than "not ok"
	name      string // result description or subtest name
	directive string // result: text after " # "
}

// tabWidth is KUnit's indentation step: it indents with four spaces, the older
// TAP-14 output with one tab, so both are one level.
const tabWidth = 4

func classify(text string) line {
	text = strings.TrimRight(text, " \t\r\n")
	l := line{indent: indentWidth(text)}
	l.body = strings.TrimLeft(text, " \t")
	b := l.body
	switch {
	case isVersion(b):
		l.kind = versionLine
	case strings.HasPrefix(b, "# Subtest:"):
		l.kind = subtestLine
		l.name = strings.TrimSpace(strings.TrimPrefix(b, "# Subtest:"))
	case strings.HasPrefix(b, "#") && (l.indent > 0 || b == "#" || strings.HasPrefix(b, "# ")):
		// At column 0 only "# ..." is KTAP's: the kernel's own "#PF: error_code(...)" lines of
		// an oops are not the test's diagnostics.
		l.kind = diagLine
	case strings.HasPrefix(b, "1.."):
		digits := b[3:]
		if i := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
			digits = digits[:i]
		}
		n, err := strconv.Atoi(digits)
		if err == nil {
			l.kind = planLine
			l.n = n
		}
	default:
		parseResult(&l)
	}
	return l
}

func isVersion(b string) bool {
	rest, ok := strings.CutPrefix(b, "KTAP version ")
	if !ok {
		rest, ok = strings.CutPrefix(b, "TAP version ")
	}
	return ok && rest != "" && allDigits(rest)
}

// parseResult recognizes "ok N [- ]description[ # directive]" and "not ok ...".
func parseResult(l *line) {
	b := l.body
	var rest string
	ok := false
	switch {
	case strings.HasPrefix(b, "ok "):
		ok = true
		rest = b[len("ok "):]
	case strings.HasPrefix(b, "not ok "):
		rest = b[len("not ok "):]
	default:
		return
	}
	end := strings.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(rest)
	}
	if end == 0 || (end < len(rest) && rest[end] != ' ') {
		return
	}
	l.ok = ok
	if n, err := strconv.Atoi(rest[:end]); err == nil && n > 0 {
		l.n = n
	}
	rest = strings.TrimPrefix(rest[end:], " ")
	rest = strings.TrimPrefix(rest, "- ")
	if strings.HasPrefix(rest, "#") {
		// "ok 3 # SKIP reason": no description.
		l.directive = strings.TrimSpace(rest[1:])
	} else if i := strings.Index(rest, " #"); i >= 0 {
		l.name = strings.TrimSpace(rest[:i])
		l.directive = strings.TrimSpace(rest[i+2:])
	} else {
		l.name = strings.TrimSpace(rest)
	}
	l.kind = resultLine
}

// skipReason reports whether a directive is SKIP, and the reason after it.
func skipReason(directive string) (string, bool) {
	if len(directive) < 4 || !strings.EqualFold(directive[:4], "SKIP") {
		return "", false
	}
	rest := directive[4:]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

func indentWidth(s string) int {
	w := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ':
			w++
		case '\t':
			w = (w/tabWidth + 1) * tabWidth
		default:
			return w
		}
	}
	return w
}

// dedent removes up to n columns of leading whitespace from s.
func dedent(s string, n int) string {
	w := 0
	for i := 0; i < len(s); i++ {
		if w >= n {
			return s[i:]
		}
		switch s[i] {
		case ' ':
			w++
		case '\t':
			next := (w/tabWidth + 1) * tabWidth
			if next > n {
				// A tab straddling the cut: keep the columns past it as spaces.
				return strings.Repeat(" ", next-n) + s[i+1:]
			}
			w = next
		default:
			return s[i:]
		}
	}
	return ""
}
