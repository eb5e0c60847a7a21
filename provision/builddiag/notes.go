package builddiag

import (
	"bufio"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// note is one of rustc's "found an item that was configured out" notes: where the item is,
// and the #[cfg] predicates its snippet shows (none when rustc could not read the file).
type note struct {
	at    string // "path:line:col"
	path  string
	line  int
	attrs []string
}

var (
	// rustc: "note: found an item that was configured out".
	configuredOutRE = regexp.MustCompile(`^\s*(?:= )?note: found an item that was configured out\s*$`)
	// rustc's location line: "  --> rust/kernel/lib.rs:56:9", or "::: " for a second file.
	locationRE = regexp.MustCompile(`^\s*(?:-->|:::)\s+(.+):(\d+):(\d+)\s*$`)
	// A line of rustc's snippet: "55 | #[cfg(CONFIG_CONFIGFS_FS)]".
	snippetRE = regexp.MustCompile(`^\s*(\d+)\s*\|\s?(.*)$`)
)

// configuredOut finds rustc's configured-out notes in a build's output. A note runs until
// the blank line that ends rustc's diagnostic, or a line that starts another (older rustc
// puts "note: the item is gated here", with its own location and snippet, right after).
func configuredOut(out string) []note {
	var notes []note
	var cur *note
	for l := range strings.Lines(out) {
		l = strings.TrimRight(l, "\r\n")
		switch {
		case configuredOutRE.MatchString(l):
			notes = append(notes, note{})
			cur = &notes[len(notes)-1]
			continue
		case cur == nil:
			continue
		case strings.TrimSpace(l) == "", l[0] != ' ' && !strings.HasPrefix(l, "note: the item is gated"):
			cur = nil
			continue
		}
		if m := locationRE.FindStringSubmatch(l); m != nil && cur.at == "" {
			cur.path = m[1]
			cur.line, _ = strconv.Atoi(m[2])
			cur.at = m[1] + ":" + m[2] + ":" + m[3]
		} else if m := snippetRE.FindStringSubmatch(l); m != nil {
			cur.attrs = append(cur.attrs, cfgAttrs(m[2])...)
		}
	}
	// A note without a location names no item to explain.
	kept := notes[:0]
	for _, n := range notes {
		if n.at != "" {
			kept = append(kept, n)
		}
	}
	return kept
}

// cfgAttrs returns the predicates of the #[cfg(...)] attributes on a line of source.
func cfgAttrs(line string) []string {
	var out []string
	for {
		i := strings.Index(line, "#[cfg(")
		if i < 0 {
			return out
		}
		line = line[i+len("#[cfg("):]
		end := closing(line)
		if end < 0 {
			return out // continued on the next line: not read
		}
		out = append(out, strings.TrimSpace(line[:end]))
		line = line[end:]
	}
}

// closing returns the index of the ")" that closes the parenthesis s follows, skipping
// string literals; -1 when s does not close it.
func closing(s string) int {
	depth, inStr := 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return i
			}
			depth--
		}
	}
	return -1
}

// maxSourceLine is where cfgsAt stops reading a line (a source line is far shorter).
const maxSourceLine = 64 * 1024

// cfgsAt reads the #[cfg] predicates of the item a rustc location names in file, when the
// output showed no snippet: the location is the item's name or one of its attributes, and
// its attributes (with doc comments between them) are the lines right above the item.
// None when file is "" or cannot be read.
func cfgsAt(file string, line int) []string {
	if file == "" || line < 1 {
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), maxSourceLine)
	// The item starts at most a few lines below the location; its attributes are above.
	for sc.Scan() && len(lines) < line+64 {
		lines = append(lines, sc.Text())
	}
	if line > len(lines) {
		return nil
	}
	// An attribute alone on its line; "#[cfg(CONFIG_X)] pub mod x;" is the item.
	isAttr := func(s string) bool {
		s = strings.TrimSpace(s)
		return strings.HasPrefix(s, "#[") && strings.HasSuffix(s, "]")
	}
	isComment := func(s string) bool { return strings.HasPrefix(strings.TrimSpace(s), "//") }
	item := line - 1
	for item < len(lines)-1 && (isAttr(lines[item]) || isComment(lines[item])) {
		item++
	}
	attrs := cfgAttrs(lines[item]) // "#[cfg(CONFIG_X)] pub mod x;"
	for i := item - 1; i >= 0 && (isAttr(lines[i]) || isComment(lines[i])); i-- {
		if isAttr(lines[i]) {
			attrs = append(cfgAttrs(lines[i]), attrs...)
		}
	}
	return attrs
}
