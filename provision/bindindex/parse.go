// Package bindindex knows a built kernel's raw Rust surface: the items bindgen generated for
// the `bindings` and `uapi` crates (rust/bindings/bindings_generated.rs, the rust_helper_*
// wrappers in rust/bindings/bindings_helpers_generated.rs, rust/uapi/uapi_generated.rs), and
// where the `kernel` crate's safe abstractions use them. rustdoc hides these crates; this
// index answers "is X bound, with which signature, and who wraps it" in milliseconds, and,
// when X is not bound, finds its C declaration in the kernel's headers.
package bindindex

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Kind is what sort of Rust item bindgen made.
type Kind string

const (
	KindFn     Kind = "fn"
	KindStruct Kind = "struct"
	KindUnion  Kind = "union"
	KindEnum   Kind = "enum"
	KindConst  Kind = "const"
	KindType   Kind = "type"
	KindStatic Kind = "static"
)

// Item is one item of a generated file.
type Item struct {
	Kind  Kind   `json:"kind"`
	Name  string `json:"name"`
	Crate string `json:"crate"` // "bindings" or "uapi": the item is crate::Name
	// Sig is the item's Rust text on one line, whitespace normalized: a fn's declaration, a
	// struct with its fields, a const with its value.
	Sig  string `json:"signature"`
	File string `json:"-"` // relative to the index's directory, e.g. rust/bindings/bindings_generated.rs
	Line int    `json:"-"` // 1-based line of the item's `pub ...` line
	// Helper is the C symbol a rust_helper_* wrapper links to (rust_helper_NAME): the C
	// original is a static inline function or a macro, which bindgen cannot bind.
	Helper string `json:"helper,omitempty"`
	// Enumerator is, for a constant of a C enum (bindgen's constified enums are named
	// TYPE_ENUMERATOR), the enumerator's C name, so the C name finds it too.
	Enumerator string `json:"enumerator,omitempty"`
}

// The generated files, relative to a kernel tree, and the crate each belongs to.
const (
	BindingsFile = "rust/bindings/bindings_generated.rs"
	HelpersFile  = "rust/bindings/bindings_helpers_generated.rs"
	UapiFile     = "rust/uapi/uapi_generated.rs"
	KernelDir    = "rust/kernel"
)

// GeneratedFiles are the generated files and their crates, in the order they are indexed.
// Every Rust-enabled kernel has bindings_generated.rs; the others are indexed when there.
var GeneratedFiles = []struct {
	Path, Crate string
	Required    bool
}{
	{BindingsFile, "bindings", true},
	{HelpersFile, "bindings", false},
	{UapiFile, "uapi", false},
}

var (
	topItemRe    = regexp.MustCompile(`^pub (struct|union|enum|const|type|static(?: mut)?) (r#)?([A-Za-z_][A-Za-z0-9_]*)`)
	externItemRe = regexp.MustCompile(`^    pub (fn|static(?: mut)?) (r#)?([A-Za-z_][A-Za-z0-9_]*)`)
	linkNameRe   = regexp.MustCompile(`^    #\[link_name\s*=\s*"([^"]*)"\]`)
	constTypeRe  = regexp.MustCompile(`^pub const [A-Za-z0-9_]+: ([A-Za-z_][A-Za-z0-9_]*) =`)
)

// Parse reads one file of bindgen's output (rustfmt'ed, as the kernel's build leaves it) and
// returns its public items in file order. file and crate are recorded in each item. Items at
// the top level and the declarations inside `extern "C"` blocks are indexed; the bodies of
// impl blocks (bitfield accessors, Default impls) are not.
func Parse(r io.Reader, file, crate string) ([]Item, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	var (
		items    []Item
		cur      *Item    // the item being collected
		text     []string // its lines
		depth    int      // bracket depth of its text so far
		inExtern bool
		inImpl   bool
		linkName string
		lineNo   int
	)
	finish := func() {
		cur.Sig = normalize(strings.Join(text, " "))
		items = append(items, *cur)
		cur, text, depth = nil, nil, 0
	}
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if cur != nil {
			text = append(text, line)
			depth += bracketDelta(line)
			if itemDone(cur.Kind, line, depth) {
				finish()
			}
			continue
		}
		switch {
		case inImpl:
			if line == "}" {
				inImpl = false
			}
			continue
		case inExtern:
			if line == "}" {
				inExtern, linkName = false, ""
				continue
			}
			if m := linkNameRe.FindStringSubmatch(line); m != nil {
				linkName = m[1]
				continue
			}
			m := externItemRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			kind := KindFn
			if m[1] != "fn" {
				kind = KindStatic
			}
			cur = &Item{Kind: kind, Name: m[3], Crate: crate, File: file, Line: lineNo}
			if h, ok := strings.CutPrefix(linkName, "rust_helper_"); ok && h != "" {
				cur.Helper = linkName
			}
			linkName = ""
		case strings.HasPrefix(line, "unsafe extern \"C\" {"), strings.HasPrefix(line, "extern \"C\" {"):
			inExtern = !strings.HasSuffix(line, "}")
			continue
		case strings.HasPrefix(line, "impl"):
			inImpl = !strings.HasSuffix(line, "}")
			continue
		default:
			m := topItemRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			kind := Kind(m[1])
			if strings.HasPrefix(m[1], "static") {
				kind = KindStatic
			}
			cur = &Item{Kind: kind, Name: m[3], Crate: crate, File: file, Line: lineNo}
			if kind == KindConst {
				if t := constTypeRe.FindStringSubmatch(line); t != nil {
					if e, ok := strings.CutPrefix(cur.Name, t[1]+"_"); ok && e != "" {
						cur.Enumerator = e
					}
				}
			}
		}
		text = []string{line}
		depth = bracketDelta(line)
		if itemDone(cur.Kind, line, depth) {
			finish()
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: %s %s does not end before the file does", file, cur.Line, cur.Kind, cur.Name)
	}
	return items, nil
}

// itemDone says whether an item's text is complete with line: brackets balanced and the
// line ends it (`;` for declarations, consts, types, tuple and unit structs; `}` for
// bodies).
func itemDone(kind Kind, line string, depth int) bool {
	if depth > 0 {
		return false
	}
	t := strings.TrimSpace(line)
	switch kind {
	case KindStruct, KindUnion, KindEnum:
		return strings.HasSuffix(t, "}") || strings.HasSuffix(t, ";")
	}
	return strings.HasSuffix(t, ";")
}

// bracketDelta is how much line opens ( [ { more than it closes, outside string and byte
// string literals (a const's value may hold any of them).
func bracketDelta(line string) int {
	d := 0
	inStr := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if inStr {
			switch c {
			case '\\':
				i++
			case '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '\'':
			// A char literal ('{', '"', '\'', '\u{7b}'); a lifetime ('a) has no closing quote.
			switch {
			case i+2 < len(line) && line[i+1] != '\\' && line[i+2] == '\'':
				i += 2
			case i+3 <= len(line) && line[i+1] == '\\':
				if j := strings.IndexByte(line[i+3:], '\''); j >= 0 {
					i += 3 + j
				}
			}
		case '(', '[', '{':
			d++
		case ')', ']', '}':
			d--
		}
	}
	return d
}

var spaceRe = regexp.MustCompile(`\s+`)

// normalize puts an item's text on one line: runs of white space become one space, and
// rustfmt's line-breaking leftovers (`( a`, `a, )`, `a, }`) are closed up.
func normalize(s string) string {
	s = strings.TrimSpace(spaceRe.ReplaceAllString(s, " "))
	for _, r := range [][2]string{{"( ", "("}, {"[ ", "["}, {", )", ")"}, {" )", ")"}, {", }", " }"}, {",)", ")"}, {"< ", "<"}, {", >", ">"}} {
		s = strings.ReplaceAll(s, r[0], r[1])
	}
	return s
}
