package bindindex

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Use is one place in the `kernel` crate that names a binding: crate::NAME.
type Use struct {
	Crate string `json:"crate"` // "bindings" or "uapi"
	Name  string `json:"name"`
	File  string `json:"-"` // relative to the index's directory, e.g. rust/kernel/sync/arc.rs
	Line  int    `json:"-"`
	// Impl is the enclosing impl or trait block's header (`impl<T> Arc<T>`), Fn the
	// enclosing function's (`pub fn new`); "" when there is none.
	Impl string `json:"impl,omitempty"`
	Fn   string `json:"fn,omitempty"`
}

var (
	useRe  = regexp.MustCompile(`\b(bindings|uapi)::(r#)?([A-Za-z_][A-Za-z0-9_]*)`)
	fnRe   = regexp.MustCompile(`^((?:pub(?:\([a-z:\s]+\))? )?(?:const )?(?:async )?(?:unsafe )?(?:extern "C" )?fn [A-Za-z_][A-Za-z0-9_]*)`)
	implRe = regexp.MustCompile(`^((?:unsafe )?impl\b.*?|(?:pub(?:\([a-z:\s]+\))? )?(?:unsafe )?trait\b.*?)\s*(\{.*)?$`)
)

// block is a fn, impl or trait the scanner is inside, and its indentation.
type block struct {
	indent int
	impl   bool
	header string
}

// ScanUses finds the uses of bindings::NAME and uapi::NAME in one Rust source file of the
// kernel crate (rustfmt'ed, as the kernel's are), with the impl and fn each is in, told by
// indentation. Comments (doc examples included) are not uses.
func ScanUses(r io.Reader, file string) ([]Use, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	var (
		uses   []Use
		stack  []block
		lineNo int
	)
	for sc.Scan() {
		lineNo++
		raw := sc.Text()
		t := strings.TrimLeft(raw, " \t")
		if t == "" || strings.HasPrefix(t, "//") {
			continue
		}
		indent := len(raw) - len(t)
		// A line at a block's indentation ends it, unless it continues the block's header
		// (a multi-line signature's `) -> T {`, a where clause, the opening brace).
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if indent > top.indent || (indent == top.indent && continuesHeader(t)) {
				break
			}
			stack = stack[:len(stack)-1]
		}
		if m := fnRe.FindStringSubmatch(t); m != nil {
			stack = append(stack, block{indent: indent, header: m[1]})
		} else if m := implRe.FindStringSubmatch(t); m != nil {
			stack = append(stack, block{indent: indent, impl: true, header: strings.TrimSpace(m[1])})
		}
		code := t
		if i := strings.Index(code, "//"); i >= 0 && !strings.Contains(code[:i], `"`) {
			code = code[:i]
		}
		for _, m := range useRe.FindAllStringSubmatch(code, -1) {
			u := Use{Crate: m[1], Name: m[3], File: file, Line: lineNo}
			for _, b := range stack {
				if b.impl {
					u.Impl, u.Fn = b.header, ""
				} else {
					u.Fn = b.header
				}
			}
			uses = append(uses, u)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return uses, nil
}

func continuesHeader(t string) bool {
	for _, p := range []string{")", ">", "where", "{", "->", "+"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}
