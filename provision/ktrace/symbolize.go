package ktrace

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

// Symbolizer finds the source position of a code address given, as the
// kernel prints it, by a symbol and an offset into it.
//
// Symbol and offset rather than an address: a module's .ko is a relocatable
// object whose sections (.text, .init.text, .exit.text) all start at
// address 0, so a bare address is ambiguous in it, and the kernel prints
// only symbol+offset anyway. llvm-addr2line and llvm-symbolizer (LLVM 18 and
// newer) accept "SYMBOL+OFFSET" in place of an address and look it up in the
// object's symbol table.
type Symbolizer interface {
	// Symbolize resolves symbol+offset in the named module ("" for the
	// kernel itself). symbol is the name as the symbol table holds it
	// (mangled, for Rust).
	Symbolize(ctx context.Context, module, symbol string, offset uint64) ([]Source, error)
}

// ErrNoLine is the error a Symbolizer wraps when the object has no line
// information for an address (assembly without debug information, an
// object built without it). It concerns that address only.
var ErrNoLine = errors.New("no line information")

// ErrNoObject is the error Addr2Line wraps when there is no object to read a
// module's (or the kernel's) debug information from: none was kept.
var ErrNoObject = errors.New("no object with debug information")

// Addr2Line is a Symbolizer that runs llvm-addr2line (or a command line
// that runs it, in the toolchain root, say) once per address.
type Addr2Line struct {
	// Command is the program and its leading arguments.
	Command []string
	// Object returns the object file holding a module's debug information:
	// its .ko, or vmlinux for module "".
	Object func(module string) (string, error)
	// Args builds the arguments after Command for one query
	// ("SYMBOL+0xOFF") in an object; nil means Addr2LineArgs.
	Args func(object, query string) []string
}

var _ Symbolizer = (*Addr2Line)(nil)

// Addr2LineArgs asks for the function names (-f) and the whole inline
// chain (-i), without demangling: rustsym.Demangle does it the same way for every
// name kmodvm prints.
func Addr2LineArgs(object, query string) []string {
	return []string{"-f", "-i", "--no-demangle", "-e", object, query}
}

// Symbolize runs the command and reads its answer.
func (a *Addr2Line) Symbolize(ctx context.Context, module, symbol string, offset uint64) ([]Source, error) {
	if len(a.Command) == 0 {
		return nil, errors.New("symbolize: no llvm-addr2line command given")
	}
	if a.Object == nil {
		return nil, errors.New("symbolize: no way to find the objects given")
	}
	obj, err := a.Object(module)
	if err != nil {
		return nil, fmt.Errorf("symbolize %s: %w: %w", describeModule(module), ErrNoObject, err)
	}
	query := symbol + "+0x" + strconv.FormatUint(offset, 16)
	argsFn := a.Args
	if argsFn == nil {
		argsFn = Addr2LineArgs
	}
	args := append(append([]string{}, a.Command[1:]...), argsFn(obj, query)...)
	cmd := exec.CommandContext(ctx, a.Command[0], args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("symbolize %s in %s: %s: %w: %s", query, obj, a.Command[0], err, strings.TrimSpace(stderr.String()))
	}
	srcs := parseAddr2Line(out)
	if len(srcs) == 0 {
		return nil, fmt.Errorf("symbolize %s in %s: %w", query, obj, ErrNoLine)
	}
	return srcs, nil
}

func describeModule(module string) string {
	if module == "" {
		return "the kernel"
	}
	return "module " + module
}

// parseAddr2Line reads llvm-addr2line -f output: a function line and a
// "file:line" line per position, "??" and "??:0" when it knows none, and
// maybe " (discriminator N)" after the line number.
func parseAddr2Line(out []byte) []Source {
	var srcs []Source
	sc := bufio.NewScanner(bytes.NewReader(out))
	var fn string
	odd := false
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if !odd {
			fn, odd = l, true
			continue
		}
		odd = false
		l, _, _ = strings.Cut(l, " (discriminator")
		i := strings.LastIndexByte(l, ':')
		if i <= 0 {
			continue
		}
		file := l[:i]
		n, err := strconv.Atoi(l[i+1:])
		if err != nil || n <= 0 || file == "??" {
			continue
		}
		if fn == "??" {
			fn = ""
		}
		srcs = append(srcs, Source{Func: rustsym.Demangle(fn), File: file, Line: n})
	}
	return srcs
}

// Resolve puts a source position on each frame that names a function,
// maps the positions and the trace's printed locations to host files, and
// reads the source line of the top module frame when its file is on the
// host. The paths in the title are mapped too. s may be nil: then only
// the printed locations are mapped. A module the symbolizer fails on
// (other than with ErrNoLine) is tried once; the errors are joined and the rest of the trace still done.
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
		failed := map[string]bool{}
		// callSite: a call trace frame is a return address, the instruction after the
		// call; the call is the byte before it. Symbolizing the return address itself
		// goes wrong where it matters most: a call to a function that does not return
		// (a Rust panic, BUG) is often a function's last instruction, so its return
		// address is the function's end ("init+0xf4/0xf4"), which the line tables give
		// to the function's first line or to the next function. The RIP is the
		// faulting instruction itself.
		resolve := func(f *Frame, callSite bool) {
			if f.Func == "" || failed[f.Module] {
				return
			}
			off := f.Offset
			if callSite && off > 0 {
				off--
			}
			srcs, err := s.Symbolize(ctx, f.Module, f.symbolName(), off)
			if errors.Is(err, ErrNoLine) {
				return
			}
			if err != nil {
				failed[f.Module] = true
				errs = append(errs, err)
				return
			}
			// Of an inline chain, the innermost position on the host: code
			// inlined from core or the kernel crate into a module function
			// is shown at the module's line that called it.
			f.File, f.Line = srcs[0].File, srcs[0].Line
			for _, src := range srcs {
				if host, ok := m.Map(src.File); ok {
					f.File, f.Line = host, src.Line
					onHost[f] = true
					break
				}
			}
		}
		if t.RIP != nil {
			resolve(t.RIP, false)
		}
		for i := range t.Frames {
			if ctx.Err() != nil {
				errs = append(errs, ctx.Err())
				break
			}
			resolve(&t.Frames[i], true)
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
