package kconfig

import (
	"bufio"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kmodvm/kmodvm/provision/editdist"
)

// Kconfig is an index of the symbols a kernel tree's Kconfig files define.
type Kconfig struct {
	syms  map[string]*Symbol
	names []string // sorted, for Suggest
}

// Symbol is everything the index knows about one Kconfig symbol.
type Symbol struct {
	Name string
	Type string // bool, tristate, string, int or hex; "" if no definition says
	Defs []Definition
	// SelectedBy lists the symbols whose "select" turns this one on.
	SelectedBy []Select
}

// Definition is one "config X" or "menuconfig X" entry.
type Definition struct {
	File string // relative to the tree, with forward slashes
	Line int
	// Arch is the architecture directory the entry lives in ("arm64" for
	// arch/arm64/...), or "" for common code. x86 entries have Arch "x86".
	Arch string
	Type string
	// DependsOn holds the dependency clauses that all must hold: those of
	// enclosing "if" blocks, "menu"/"choice" blocks and the files that source
	// this one, then the entry's own "depends on" lines.
	DependsOn []string
	// Prompt is true when the entry has a prompt, so a user can set it;
	// PromptIf is the prompt's "if" condition, if any.
	Prompt   bool
	PromptIf string
	// Ranges holds "range" lines as "MIN MAX" or "MIN MAX if COND".
	Ranges []string
	// Choice is where the enclosing choice starts ("kernel/Kconfig.hz:2"),
	// or "" outside a choice.
	Choice  string
	Selects []Select
}

// Select is one "select TARGET if COND" line of the symbol By.
type Select struct {
	By, Target, If string
}

// Applies reports whether the definition is used when building for SrcArch.
func (d Definition) Applies() bool {
	return d.Arch == "" || d.Arch == SrcArch
}

// Lookup returns the symbol sym ("RUST" or "CONFIG_RUST").
func (k *Kconfig) Lookup(sym string) (Symbol, bool) {
	s, ok := k.syms[normSym(sym)]
	if !ok {
		return Symbol{}, false
	}
	return *s, true
}

// Len returns the number of distinct symbols.
func (k *Kconfig) Len() int { return len(k.syms) }

// skipDirs are not walked: they hold no Kconfig files the build reads, or
// (scripts/kconfig/tests) only test symbols that would pollute suggestions.
var skipDirs = map[string]bool{
	".git":                  true,
	"Documentation":         true,
	"scripts/kconfig/tests": true,
}

// LoadKconfig reads every file named Kconfig* under tree. Dependencies of
// enclosing if/menu/choice blocks are included, and so are those around the
// "source" line that pulls a file in, following sources from the top-level
// Kconfig with SRCARCH=x86.
func LoadKconfig(tree string) (*Kconfig, error) {
	files := map[string]*kfile{}
	err := filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		isDir := d.IsDir()
		if !isDir && !strings.HasPrefix(d.Name(), "Kconfig") {
			return nil
		}
		rel, _ := filepath.Rel(tree, path)
		rel = filepath.ToSlash(rel)
		if isDir {
			if skipDirs[rel] {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		f, err := parseKconfigFile(path, rel)
		if err != nil {
			return err
		}
		files[rel] = f
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read Kconfig files under %s: %w", tree, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no Kconfig files under %s: is it a kernel source tree?", tree)
	}

	// Dependencies a file inherits from the source lines that include it.
	inherited := map[string][]string{}
	var follow func(name string, deps []string, depth int)
	follow = func(name string, deps []string, depth int) {
		f, ok := files[name]
		if !ok || depth > 64 {
			return
		}
		if _, done := inherited[name]; done {
			return
		}
		inherited[name] = deps
		for _, s := range f.sources {
			follow(s.path, concat(deps, s.deps), depth+1)
		}
	}
	follow("Kconfig", nil, 0)

	k := &Kconfig{syms: map[string]*Symbol{}}
	names := slices.Sorted(func(yield func(string) bool) {
		for n := range files {
			if !yield(n) {
				return
			}
		}
	})
	for _, name := range names {
		inh := inherited[name]
		for _, d := range files[name].defs {
			d.def.DependsOn = dedup(concat(inh, d.def.DependsOn))
			s := k.syms[d.name]
			if s == nil {
				s = &Symbol{Name: d.name}
				k.syms[d.name] = s
			}
			if s.Type == "" {
				s.Type = d.def.Type
			}
			s.Defs = append(s.Defs, d.def)
		}
	}
	for _, s := range k.syms {
		for _, d := range s.Defs {
			if !d.Applies() {
				continue
			}
			for _, sel := range d.Selects {
				if t := k.syms[sel.Target]; t != nil {
					t.SelectedBy = append(t.SelectedBy, sel)
				}
			}
		}
	}
	for _, s := range k.syms {
		slices.SortFunc(s.SelectedBy, func(a, b Select) int { return strings.Compare(a.By, b.By) })
		s.SelectedBy = slices.CompactFunc(s.SelectedBy, func(a, b Select) bool { return a == b })
		k.names = append(k.names, s.Name)
	}
	slices.Sort(k.names)
	return k, nil
}

func concat(a, b []string) []string {
	if len(a) == 0 {
		return slices.Clip(b)
	}
	out := make([]string, 0, len(a)+len(b))
	return append(append(out, a...), b...)
}

// dedup drops repeated clauses, keeping the first of each.
func dedup(clauses []string) []string {
	out := clauses[:0:0]
	seen := make(map[string]bool, len(clauses))
	for _, c := range clauses {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

type kfile struct {
	defs    []namedDef
	sources []sourceLine
}

type namedDef struct {
	name string
	def  Definition
}

type sourceLine struct {
	path string
	deps []string
}

// block is an open if/menu/choice.
type block struct {
	kind string
	deps []string
	pos  string // where a choice starts
}

// maxBlockDepth bounds how deep if, menu and choice blocks may nest in one
// Kconfig file. The kernel's own files nest about ten deep; every entry
// inherits the conditions of its blocks, so a file nesting thousands deep
// would cost time and memory quadratic in its length.
const maxBlockDepth = 100

// parseKconfigFile reads one Kconfig file. It understands just enough of the
// language to find entries, their types, prompts, dependencies and selects.
func parseKconfigFile(path, rel string) (*kfile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return parseKconfig(fh, rel)
}

// parseKconfig reads the Kconfig file rel (its path in the tree) from r.
func parseKconfig(r io.Reader, rel string) (*kfile, error) {
	arch := ""
	if rest, ok := strings.CutPrefix(rel, "arch/"); ok {
		if a, _, ok := strings.Cut(rest, "/"); ok {
			arch = a
		}
	}

	f := &kfile{}
	var (
		stack    []block
		cur      *Definition // entry whose attributes we are reading
		curBlock *block      // menu or choice whose "depends on" we are reading
		inHelp   bool
		helpInd  = -1
	)
	ctx := func() []string {
		var out []string
		for _, b := range stack {
			out = append(out, b.deps...)
		}
		return out
	}
	choice := func() string {
		for i := len(stack) - 1; i >= 0; i-- {
			if stack[i].kind == "choice" {
				return stack[i].pos
			}
		}
		return ""
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if inHelp {
			if strings.TrimSpace(line) == "" {
				continue
			}
			// As in Kconfig's lexer: help ends at a line starting in column 0
			// or indented less than the help text's first line.
			ind := indent(line)
			if ind > 0 && (helpInd < 0 || ind >= helpInd) {
				if helpInd < 0 {
					helpInd = ind
				}
				continue
			}
			inHelp = false
		}
		start := n
		if strings.HasSuffix(line, "\\") {
			// Appending to one buffer, not +=: a hostile file continued over
			// many lines would otherwise cost time quadratic in its length.
			buf := []byte(line)
			for strings.HasSuffix(line, "\\") && sc.Scan() {
				n++
				line = strings.TrimSpace(sc.Text())
				buf = append(append(buf[:len(buf)-1], ' '), line...)
			}
			line = string(buf)
		}
		line = strings.TrimSpace(stripComment(line))
		if line == "" {
			continue
		}
		kw, rest := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			kw, rest = line[:i], strings.Join(strings.Fields(line[i+1:]), " ")
		}

		switch kw {
		case "config", "menuconfig":
			f.defs = append(f.defs, namedDef{name: rest, def: Definition{
				File: rel, Line: start, Arch: arch, DependsOn: ctx(), Choice: choice(),
			}})
			cur, curBlock = &f.defs[len(f.defs)-1].def, nil
		case "menu", "choice", "if":
			if len(stack) >= maxBlockDepth {
				return nil, fmt.Errorf("%s:%d: if, menu and choice blocks nest more than %d deep here; is this a kernel source tree?", rel, start, maxBlockDepth)
			}
			b := block{kind: kw, pos: fmt.Sprintf("%s:%d", rel, start)}
			if kw == "if" {
				b.deps = []string{rest}
			}
			stack = append(stack, b)
			cur, curBlock = nil, &stack[len(stack)-1]
			if kw == "if" {
				curBlock = nil // an "if" takes no "depends on" of its own
			}
		case "endif", "endmenu", "endchoice":
			want := map[string]string{"endif": "if", "endmenu": "menu", "endchoice": "choice"}[kw]
			for i := len(stack) - 1; i >= 0; i-- {
				if stack[i].kind == want {
					stack = stack[:i]
					break
				}
			}
			cur, curBlock = nil, nil
		case "comment", "mainmenu":
			cur, curBlock = nil, &block{} // swallow its "depends on"
		case "source", "osource", "rsource", "orsource":
			p := unquote(rest)
			p = strings.ReplaceAll(p, "$(SRCARCH)", SrcArch)
			p = strings.ReplaceAll(p, "$(HEADER_ARCH)", SrcArch)
			if kw == "rsource" || kw == "orsource" {
				p = filepath.ToSlash(filepath.Join(filepath.Dir(rel), p))
			}
			f.sources = append(f.sources, sourceLine{path: p, deps: ctx()})
			cur, curBlock = nil, nil
		case "depends":
			expr, ok := strings.CutPrefix(rest, "on")
			if !ok {
				continue
			}
			expr = strings.TrimSpace(expr)
			switch {
			case cur != nil:
				cur.DependsOn = append(cur.DependsOn, expr)
			case curBlock != nil:
				curBlock.deps = append(curBlock.deps, expr)
			}
		case "help", "---help---":
			inHelp, helpInd = true, -1
		case "bool", "tristate", "string", "int", "hex", "def_bool", "def_tristate", "prompt":
			if cur == nil {
				continue
			}
			if t := strings.TrimPrefix(kw, "def_"); t != "prompt" {
				cur.Type = t
			}
			if kw != "def_bool" && kw != "def_tristate" && strings.HasPrefix(rest, `"`) {
				cur.Prompt = true
				if _, cond, ok := cutIf(rest); ok {
					cur.PromptIf = cond
				}
			}
		case "select":
			if cur == nil {
				continue
			}
			target, cond, _ := cutIf(rest)
			name := f.defs[len(f.defs)-1].name
			cur.Selects = append(cur.Selects, Select{By: name, Target: strings.TrimSpace(target), If: cond})
		case "range":
			if cur != nil {
				cur.Ranges = append(cur.Ranges, rest)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", rel, err)
	}
	return f, nil
}

// indent returns a line's indentation width with tabs at 8 columns.
func indent(s string) int {
	w := 0
	for _, r := range s {
		switch r {
		case ' ':
			w++
		case '\t':
			w = (w/8 + 1) * 8
		default:
			return w
		}
	}
	return w
}

// stripComment drops a # comment outside quotes.
func stripComment(s string) string {
	if i := indexUnquoted(s, func(i int) bool { return s[i] == '#' }); i >= 0 {
		return s[:i]
	}
	return s
}

// cutIf splits `"prompt" if COND` or `SYM if COND` at the " if " that is
// outside quotes.
func cutIf(s string) (before, cond string, ok bool) {
	i := indexUnquoted(s, func(i int) bool {
		return (s[i] == ' ' || s[i] == '\t') && strings.HasPrefix(s[i+1:], "if") &&
			len(s) > i+3 && (s[i+3] == ' ' || s[i+3] == '\t')
	})
	if i < 0 {
		return s, "", false
	}
	return strings.TrimSpace(s[:i]), strings.TrimSpace(s[i+3:]), true
}

// indexUnquoted returns the first index outside '...' or "..." (backslash escapes
// honoured) at which at(i) holds, or -1.
func indexUnquoted(s string, at func(i int) bool) int {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0 && c == '\\':
			i++
		case q != 0 && c == q:
			q = 0
		case q == 0 && (c == '"' || c == '\''):
			q = c
		case q == 0 && at(i):
			return i
		}
	}
	return -1
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		return s[1 : len(s)-1]
	}
	return s
}

// Suggest returns up to three existing symbol names closest to sym by edit
// distance, for typos; nil when nothing is close.
func (k *Kconfig) Suggest(sym string) []string {
	sym = strings.ToUpper(normSym(sym))
	maxDist := max(1, min(3, len(sym)/4))
	type cand struct {
		name string
		dist int
	}
	var cands []cand
	for _, n := range k.names {
		if abs(len(n)-len(sym)) > maxDist {
			continue
		}
		if d := editdist.Distance(sym, n, maxDist); d <= maxDist {
			cands = append(cands, cand{n, d})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.dist - b.dist })
	var out []string
	for i := 0; i < len(cands) && i < 3; i++ {
		out = append(out, cands[i].name)
	}
	return out
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
