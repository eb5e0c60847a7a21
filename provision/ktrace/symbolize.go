package ktrace

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kmodvm/kmodvm/provision/rustsym"
)

// Source is one source position of a code address. A Symbolizer gives
// several for an address in inlined code, innermost first: the first is
// where the code is, the last the function it was inlined into.
type Source struct {
	Func string `json:"func"`
	File string `json:"file"`
	Line int    `json:"line"`
}

// Query is one code address as the kernel prints it: a symbol, named as the
// object's symbol table holds it (mangled, for Rust), and an offset into it.
//
// Symbol and offset rather than an address: a module's .ko is a relocatable
// object whose sections (.text, .init.text, .exit.text) all start at
// address 0, so a bare address is ambiguous in it, and the kernel prints
// only symbol+offset anyway. llvm-addr2line and llvm-symbolizer (LLVM 18 and
// newer) accept "SYMBOL+OFFSET" in place of an address and look it up in the
// object's symbol table.
type Query struct {
	Symbol string
	Offset uint64
}

// String is the query as llvm-addr2line takes it: "SYMBOL+0xOFFSET".
func (q Query) String() string { return q.Symbol + "+0x" + strconv.FormatUint(q.Offset, 16) }

// Symbolizer finds the source positions of code addresses, all those of one
// object at once: reading an object's debug information is the cost.
type Symbolizer interface {
	// Symbolize resolves the queries in the named module ("" for the kernel
	// itself). Answer i is for query i; nil when the object has no line for
	// that address. An error concerns the whole module: it wraps ErrNoLine
	// when the module has no debug information to read (none was built or
	// kept), and is anything else when the symbolizer failed.
	Symbolize(ctx context.Context, module string, queries []Query) ([][]Source, error)
}

// ErrNoLine is the error a Symbolizer wraps when a module has no line
// information to read: an object built without it, or none kept.
var ErrNoLine = errors.New("no line information")

// ErrNoObject is the error Addr2Line wraps when there is no object to read a
// module's (or the kernel's) debug information from: none was kept.
var ErrNoObject = errors.New("no object with debug information")

// Addr2Line is a Symbolizer that runs llvm-addr2line (or a command line
// that runs it, in the toolchain root, say) once per object, with all of its
// queries.
type Addr2Line struct {
	// Command is the program and its leading arguments.
	Command []string
	// Object returns the object file holding a module's debug information:
	// its .ko, or vmlinux for module "".
	Object func(module string) (string, error)
	// Args builds the arguments after Command for the queries
	// ("SYMBOL+0xOFF", or "0xADDRESS") in an object; nil means Addr2LineArgs.
	Args func(object string, queries []string) []string
	// Link, when set, links a module's relocatable object (its .ko) into
	// an executable whose every section has an address of its own, to
	// query by address: llvm-addr2line gives the whole inline chain of an
	// address, and only the innermost position of a "SYMBOL+OFFSET" (LLVM
	// 21), which for code inlined from core or the kernel crate is not the
	// module's line. done removes the linked copy. When Link fails, the
	// module's object is asked by symbol, as without it.
	Link func(ctx context.Context, object string) (linked string, done func(), err error)
}

var _ Symbolizer = (*Addr2Line)(nil)

// Addr2LineArgs asks for the function names (-f) and the whole inline
// chain (-i) of each query, without demangling (rustsym.Demangle does it the
// same way for every name kmodvm prints), as JSON: one answer per query, in
// their order, however many positions each has.
func Addr2LineArgs(object string, queries []string) []string {
	return append([]string{"-f", "-i", "--no-demangle", "--output-style=JSON", "-e", object}, queries...)
}

// Symbolize runs the command once for all the queries and reads its answers.
func (a *Addr2Line) Symbolize(ctx context.Context, module string, queries []Query) ([][]Source, error) {
	if len(a.Command) == 0 {
		return nil, errors.New("symbolize: no llvm-addr2line command given")
	}
	if a.Object == nil {
		return nil, errors.New("symbolize: no way to find the objects given")
	}
	if len(queries) == 0 {
		return nil, nil
	}
	obj, err := a.Object(module)
	if err != nil {
		return nil, fmt.Errorf("symbolize %s: %w: %w", describeModule(module), ErrNoObject, err)
	}
	var qs []string
	if a.Link != nil && module != "" {
		linked, done, err := a.Link(ctx, obj)
		if err == nil {
			defer done()
			obj, qs = linked, addressQueries(linked, queries)
		}
	}
	if qs == nil {
		qs = make([]string, len(queries))
		for i, q := range queries {
			qs[i] = q.String()
		}
	}
	argsFn := a.Args
	if argsFn == nil {
		argsFn = Addr2LineArgs
	}
	args := append(append([]string{}, a.Command[1:]...), argsFn(obj, qs)...)
	cmd := exec.CommandContext(ctx, a.Command[0], args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("symbolize %d addresses in %s: %s: %w: %s", len(qs), obj, a.Command[0], err, strings.TrimSpace(stderr.String()))
	}
	answers, err := parseAddr2Line(out, len(qs))
	if err != nil {
		return nil, fmt.Errorf("symbolize %d addresses in %s: %w", len(qs), obj, err)
	}
	return answers, nil
}

// addressQueries turns each query into "0xADDRESS" where the object, an
// executable (or shared object) whose symbols have their final addresses,
// has exactly one function of that name; the others stay "SYMBOL+0xOFFSET",
// and all of them do when the object cannot be read as one. Two static
// functions of one name (in two files of a module) are the ambiguous case.
func addressQueries(object string, queries []Query) []string {
	qs := make([]string, len(queries))
	for i, q := range queries {
		qs[i] = q.String()
	}
	f, err := elf.Open(object)
	if err != nil {
		return qs
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return qs
	}
	syms, err := f.Symbols()
	if err != nil {
		return qs
	}
	want := map[string]bool{}
	for _, q := range queries {
		want[q.Symbol] = true
	}
	addrs := map[string][]uint64{}
	for _, s := range syms {
		if !want[s.Name] || !isCode(f, s) {
			continue
		}
		if !slices.Contains(addrs[s.Name], s.Value) {
			addrs[s.Name] = append(addrs[s.Name], s.Value)
		}
	}
	for i, q := range queries {
		if a := addrs[q.Symbol]; len(a) == 1 {
			qs[i] = "0x" + strconv.FormatUint(a[0]+q.Offset, 16)
		}
	}
	return qs
}

// isCode says whether s names code: a function, or an untyped symbol
// (assembly's), defined in an executable section.
func isCode(f *elf.File, s elf.Symbol) bool {
	typ := elf.ST_TYPE(s.Info)
	if typ != elf.STT_FUNC && typ != elf.STT_NOTYPE {
		return false
	}
	i := int(s.Section)
	if s.Section >= elf.SHN_LORESERVE || i <= 0 || i >= len(f.Sections) {
		return false
	}
	return f.Sections[i].Flags&elf.SHF_EXECINSTR != 0
}

func describeModule(module string) string {
	if module == "" {
		return "the kernel"
	}
	return "module " + module
}

// addr2lineAnswer is one query's answer in llvm-addr2line's JSON output: its
// positions (innermost first with -i), or an error. The positions are "Loc"
// in the answer to a "SYMBOL+OFFSET" query and "Symbol" in the answer to an
// address.
type addr2lineAnswer struct {
	Loc    []addr2linePosition
	Symbol []addr2linePosition
	Error  *struct{ Message string }
}

type addr2linePosition struct {
	FunctionName string
	FileName     string
	Line         int
}

// parseAddr2Line reads llvm-addr2line --output-style=JSON output for n
// queries: an array of n answers (one answer alone when the object could not
// be read). A position without a file or line ("??", 0) is left out, and so
// is the rest of a " (discriminator N)".
func parseAddr2Line(out []byte, n int) ([][]Source, error) {
	out = bytes.TrimSpace(out)
	var answers []addr2lineAnswer
	if len(out) > 0 && out[0] != '[' {
		var one addr2lineAnswer
		if err := json.Unmarshal(out, &one); err != nil {
			return nil, fmt.Errorf("read llvm-addr2line's answer: %w", err)
		}
		answers = []addr2lineAnswer{one}
	} else if err := json.Unmarshal(out, &answers); err != nil {
		return nil, fmt.Errorf("read llvm-addr2line's answer: %w", err)
	}
	if len(answers) != n {
		if len(answers) == 1 && answers[0].Error != nil {
			return nil, errors.New(answers[0].Error.Message)
		}
		return nil, fmt.Errorf("llvm-addr2line gave %d answers to %d queries", len(answers), n)
	}
	srcs := make([][]Source, n)
	for i, a := range answers {
		for _, l := range append(a.Loc, a.Symbol...) {
			if l.FileName == "" || l.FileName == "??" || l.Line <= 0 {
				continue
			}
			fn := l.FunctionName
			if fn == "??" {
				fn = ""
			}
			srcs[i] = append(srcs[i], Source{Func: rustsym.Demangle(fn), File: l.FileName, Line: l.Line})
		}
	}
	return srcs, nil
}

// Resolve puts a source position on each frame that names a function,
// maps the positions and the trace's printed locations to host files, and
// reads the source line of the top module frame when its file is on the
// host. The paths in the title are mapped too. s may be nil: then only
// the printed locations are mapped. The symbolizer is asked once per module,
// the modules before the kernel (the top module frame matters most, and
// the kernel's debug information is the biggest to read); a module it fails
// on is left without positions, the errors are joined and the rest of the
// trace still done.
func (t *Trace) Resolve(ctx context.Context, s Symbolizer, m Mapper) error {
	t.Title = m.MapText(t.Title)
	for i := range t.Locations {
		if host, ok := m.Map(t.Locations[i].File); ok {
			t.Locations[i].Host = host
		}
	}
	var errs []error
	onHost := map[*Frame]bool{}
	if s != nil {
		// A call trace frame is a return address, the instruction after the call; the
		// call is the byte before it. Symbolizing the return address itself goes wrong
		// where it matters most: a call to a function that does not return (a Rust
		// panic, BUG) is often a function's last instruction, so its return address is
		// the function's end ("init+0xf4/0xf4"), which the line tables give to the
		// function's first line or to the next function. The RIP is the faulting
		// instruction itself.
		var frames []*Frame
		var queries []Query
		if t.RIP != nil && t.RIP.Func != "" {
			frames, queries = append(frames, t.RIP), append(queries, Query{t.RIP.symbolName(), t.RIP.Offset})
		}
		for i := range t.Frames {
			f := &t.Frames[i]
			if f.Func == "" {
				continue
			}
			off := f.Offset
			if off > 0 {
				off--
			}
			frames, queries = append(frames, f), append(queries, Query{f.symbolName(), off})
		}
		for _, mod := range symbolizeOrder(frames) {
			if ctx.Err() != nil {
				errs = append(errs, ctx.Err())
				break
			}
			var fs []*Frame
			var qs []Query
			for i, f := range frames {
				if f.Module == mod {
					fs, qs = append(fs, f), append(qs, queries[i])
				}
			}
			answers, err := s.Symbolize(ctx, mod, qs)
			if errors.Is(err, ErrNoLine) {
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			for i, f := range fs {
				if i < len(answers) && placeFrame(f, answers[i], m) {
					onHost[f] = true
				}
			}
		}
	}
	if f := t.TopModuleFrame(); f != nil && onHost[f] {
		src, err := sourceLine(f.File, f.Line)
		if err != nil {
			errs = append(errs, err)
		}
		f.Source = src
	}
	return errors.Join(errs...)
}

// symbolizeOrder lists the modules of frames once each, in the order of their
// first frame, the kernel ("") last.
func symbolizeOrder(frames []*Frame) []string {
	var mods []string
	kernel := false
	for _, f := range frames {
		if f.Module == "" {
			kernel = true
		} else if !slices.Contains(mods, f.Module) {
			mods = append(mods, f.Module)
		}
	}
	if kernel {
		mods = append(mods, "")
	}
	return mods
}

// placeFrame gives f the position of srcs (one address's inline chain, innermost
// first): the innermost position in a module's own sources, so that code inlined
// from core (a slice's Index, say) or the kernel crate into a module function is
// shown at the module's line that called it; else the innermost position on the
// host; else the innermost at all. It says whether the position is on the host.
func placeFrame(f *Frame, srcs []Source, m Mapper) bool {
	if len(srcs) == 0 {
		return false
	}
	f.File, f.Line = srcs[0].File, srcs[0].Line
	found := false
	for _, src := range srcs {
		host, ok := m.Map(src.File)
		if !ok {
			continue
		}
		if m.inModuleSources(host) {
			f.File, f.Line = host, src.Line
			return true
		}
		if !found {
			f.File, f.Line, found = host, src.Line, true
		}
	}
	return found
}

// TopModuleFrame is the frame a module author looks at first: the RIP when
// it is in a module, else the first reliable module frame, else the first
// module frame at all. nil when no frame is in a module.
func (t *Trace) TopModuleFrame() *Frame {
	if t.RIP != nil && t.RIP.Module != "" {
		return t.RIP
	}
	first := -1
	for i, f := range t.Frames {
		if f.Module == "" {
			continue
		}
		if f.Reliable {
			return &t.Frames[i]
		}
		if first < 0 {
			first = i
		}
	}
	if first >= 0 {
		return &t.Frames[first]
	}
	return nil
}

// maxSourceLine bounds the text kept of a source line.
const maxSourceLine = 200

// sourceLine reads line n of a host file, trimmed.
func sourceLine(path string, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read the source line: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for i := 1; sc.Scan(); i++ {
		if i == n {
			l := strings.TrimSpace(sc.Text())
			if len(l) > maxSourceLine {
				n := maxSourceLine
				for n > 0 && !utf8.RuneStart(l[n]) {
					n--
				}
				l = l[:n] + "…"
			}
			return l, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read the source line %s:%d: %w", path, n, err)
	}
	return "", fmt.Errorf("read the source line: %s has no line %d", path, n)
}
