package bindindex

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kmodvm/kmodvm/provision/editdist"
)

// Decl is a C declaration of a name in a kernel header.
type Decl struct {
	File string `json:"-"` // relative to the kernel tree, e.g. include/linux/iio/iio.h
	Line int    `json:"-"`
	// Kind: function, static inline function, macro, function-like macro, struct, union,
	// enum, typedef, variable, enumerator.
	Kind string `json:"kind"`
	Text string `json:"text"` // the declaration's first line, trimmed
	// Header is how C code includes File: linux/iio/iio.h (uapi and arch directories
	// folded, as the kernel's include path does).
	Header string `json:"header"`
	// Guards are the CONFIG_ symbols (without CONFIG_) of the #if blocks around the
	// declaration: it is compiled out unless they are set (none in an #else branch).
	Guards []string `json:"-"`
}

// Bindable says whether adding the declaration's header to the bindings would bind it:
// bindgen binds no static inline function and no function-like macro (the kernel binds those
// through hand-written rust_helper_* C wrappers in rust/helpers/).
func (d Decl) Bindable() bool {
	return d.Kind != "static inline function" && d.Kind != "function-like macro"
}

// HeaderDirs are the directories of a kernel tree FindDecls searches, in order of
// preference: the headers a module includes.
var HeaderDirs = []string{"include", "arch/x86/include"}

// FindDecls finds the C declarations of name in the headers under tree's HeaderDirs (a
// kernel tree or kmodvm's trimmed copy of one), best first: definitions before mere
// mentions, include/linux before the rest, uapi last. Comments are skipped.
func FindDecls(tree, name string) ([]Decl, error) {
	q := regexp.QuoteMeta(name)
	pats := []struct {
		kind string
		re   *regexp.Regexp
	}{
		{"function-like macro", regexp.MustCompile(`^\s*#\s*define\s+` + q + `\(`)},
		{"macro", regexp.MustCompile(`^\s*#\s*define\s+` + q + `\b`)},
		{"struct", regexp.MustCompile(`^\s*(?:typedef\s+)?struct\s+` + q + `\s*\{`)},
		{"union", regexp.MustCompile(`^\s*(?:typedef\s+)?union\s+` + q + `\s*\{`)},
		{"enum", regexp.MustCompile(`^\s*(?:typedef\s+)?enum\s+` + q + `\s*\{`)},
		{"typedef", regexp.MustCompile(`^\s*typedef\b.*(?:\b` + q + `\s*;|\(\s*\*\s*` + q + `\s*\))`)},
		{"variable", regexp.MustCompile(`^extern\b[^(]*\b` + q + `\s*(?:\[[^\]]*\]\s*)*;`)},
		{"function", regexp.MustCompile(`^(?:[A-Za-z_][^;=()]*[\s*]|\*+)?` + q + `\s*\(`)},
		{"enumerator", regexp.MustCompile(`^\s+` + q + `\s*(?:=[^;]*)?,?\s*(?:/[*/].*)?$`)},
	}
	needle := []byte(name)
	var decls []Decl
	for _, dir := range HeaderDirs {
		root := filepath.Join(tree, dir)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if path == root && os.IsNotExist(err) {
					return fs.SkipDir
				}
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".h") {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil || !bytes.Contains(data, needle) {
				return err
			}
			rel, err := filepath.Rel(tree, path)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
			prev, n := "", 0
			var conds condStack
			for sc.Scan() {
				n++
				line := sc.Text()
				if conds.directive(line) {
					prev = line
					continue
				}
				if strings.Contains(line, name) && !isComment(line) {
					for _, p := range pats {
						if !p.re.MatchString(line) {
							continue
						}
						kind := p.kind
						if kind == "function" {
							if strings.HasPrefix(strings.TrimSpace(line), "return") {
								break
							}
							// `static inline int foo(` or, split, `static inline int` + `foo(`.
							if strings.Contains(line, "static") || (strings.HasPrefix(line, name) && strings.Contains(prev, "static")) {
								kind = "static inline function"
							}
						}
						decls = append(decls, Decl{File: rel, Line: n, Kind: kind, Text: strings.TrimSpace(line), Header: includeName(rel), Guards: conds.symbols()})
						break
					}
				}
				prev = line
			}
			return sc.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("search the kernel headers for %s: %w", name, err)
		}
	}
	slices.SortStableFunc(decls, func(a, b Decl) int {
		if d := kindRank(a.Kind) - kindRank(b.Kind); d != 0 {
			return d
		}
		return pathRank(a.File) - pathRank(b.File)
	})
	return decls, nil
}

// condStack follows a header's #if blocks: the CONFIG_ symbols each open block tests.
type condStack [][]string

var (
	directiveRe = regexp.MustCompile(`^\s*#\s*(\w+)`)
	configRe    = regexp.MustCompile(`\bCONFIG_([A-Za-z0-9_]+)`)
)

// directive takes in line when it is an #if, #ifdef, #ifndef, #elif, #else or #endif, and
// says whether it was one. An #elif or #else branch is not guarded by its #if's symbols
// (#ifdef CONFIG_X ... #else: the #else part is what a kernel without X has).
func (c *condStack) directive(line string) bool {
	m := directiveRe.FindStringSubmatch(line)
	if m == nil {
		return false
	}
	switch m[1] {
	case "if", "ifdef":
		var syms []string
		for _, s := range configRe.FindAllStringSubmatch(line, -1) {
			syms = append(syms, s[1])
		}
		if strings.Contains(line, "!") {
			syms = nil // #if !IS_ENABLED(CONFIG_X): compiled in when X is off
		}
		if strings.Contains(line, "||") && len(syms) > 1 {
			syms = syms[:1] // either will do: the first
		}
		*c = append(*c, syms)
	case "ifndef":
		*c = append(*c, nil)
	case "elif", "else":
		if len(*c) > 0 {
			(*c)[len(*c)-1] = nil
		}
	case "endif":
		if len(*c) > 0 {
			*c = (*c)[:len(*c)-1]
		}
	default:
		return false
	}
	return true
}

// symbols are the symbols of every open block, outermost first, each once.
func (c condStack) symbols() []string {
	var out []string
	for _, syms := range c {
		for _, s := range syms {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

func isComment(line string) bool {
	t := strings.TrimSpace(line)
	// A comment's continuation is "* text" or "*/"; "*name(" starts a declaration whose
	// return type (a pointer) is on the line before.
	return t == "*" || strings.HasPrefix(t, "* ") || strings.HasPrefix(t, "*\t") || strings.HasPrefix(t, "**") ||
		strings.HasPrefix(t, "*/") || strings.HasPrefix(t, "/*") || strings.HasPrefix(t, "//")
}

// kindRank puts what defines a name before what only mentions it.
func kindRank(kind string) int {
	switch kind {
	case "function", "static inline function", "struct", "union", "enum", "variable":
		return 0
	case "typedef", "macro", "function-like macro":
		return 1
	}
	return 2
}

func pathRank(rel string) int {
	switch {
	case strings.Contains(rel, "/uapi/"):
		return 3
	case strings.HasPrefix(rel, "include/linux/"):
		return 0
	case strings.HasPrefix(rel, "include/"):
		return 1
	}
	return 2
}

// includeName is how C code includes the header at rel: the include path's roots (the
// uapi, generated and arch directories among them) taken off.
func includeName(rel string) string {
	for _, p := range []string{"include/generated/uapi/", "include/uapi/", "include/",
		"arch/x86/include/generated/uapi/", "arch/x86/include/generated/", "arch/x86/include/uapi/", "arch/x86/include/"} {
		if s, ok := strings.CutPrefix(rel, p); ok {
			return s
		}
	}
	return rel
}

// HelperIncludes reads the headers the kernel's bindings are generated from: the
// `#include <X>` lines of rust/bindings/bindings_helper.h under tree. None when the file is
// missing.
func HelperIncludes(tree string) []string {
	data, err := os.ReadFile(filepath.Join(tree, "rust/bindings/bindings_helper.h"))
	if err != nil {
		return nil
	}
	var inc []string
	for _, m := range includeRe.FindAllSubmatch(data, -1) {
		inc = append(inc, string(m[1]))
	}
	return inc
}

var includeRe = regexp.MustCompile(`(?m)^\s*#\s*include\s+[<"]([^>"]+)[>"]`)

// Suggest returns up to n bound names close to name (edit distance at most 3, or
// containing it), closest first.
func (ix *Index) Suggest(name string, n int) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	lower := strings.ToLower(name)
	for _, c := range ix.Names() {
		d := editdist.Distance(lower, strings.ToLower(c), 3)
		if d > 3 && len(name) >= 4 && strings.Contains(strings.ToLower(c), lower) {
			d = 4 + len(c) - len(name)
		}
		if d <= 3 || strings.Contains(strings.ToLower(c), lower) && len(name) >= 4 {
			cs = append(cs, cand{c, d})
		}
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return a.d - b.d })
	var out []string
	for _, c := range cs {
		if len(out) == n {
			break
		}
		out = append(out, c.name)
	}
	return out
}
