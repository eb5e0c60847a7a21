package ktrace

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/kmodvm/kmodvm/provision/rustsym"
)

// Frame is one line of a call trace, or the RIP (pc) line of a register dump.
type Frame struct {
	// Func is the function, Rust symbols demangled:
	// "<rust_oops::RustOops as kernel::Module>::init". Empty for a frame the
	// kernel could only print as an address.
	Func string `json:"func,omitempty"`
	// Symbol is the symbol as the kernel printed it, when Func differs (a
	// mangled Rust name): what the object's symbol table holds.
	Symbol string `json:"symbol,omitempty"`
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
	// Addr is the address of a frame printed without a symbol ("? 0xffffffffa0200000").
	Addr   uint64 `json:"addr,omitempty"`
	Module string `json:"module,omitempty"` // "" for the kernel itself
	// Reliable is false for the frames the unwinder marks with "?": words on
	// the stack that look like return addresses, which may be stale.
	Reliable bool   `json:"reliable"`
	Raw      string `json:"raw"`
	// File and Line are the source position of the frame's address, on the
	// host where it could be mapped there; set by Trace.Resolve.
	File string `json:"file,omitempty"`
	Line int    `json:"line,omitempty"`
	// Source is the text of that line, for the top module frame only.
	Source string `json:"source,omitempty"`
}

// symbolName returns the name the object's symbol table knows the frame's function by.
func (f Frame) symbolName() string {
	if f.Symbol != "" {
		return f.Symbol
	}
	return f.Func
}

// frameRE matches a frame: "  ? name+0x12/0x30 [module]" or, with a build id,
// "name+0x12/0x30 [module 0123abcd…]".
var frameRE = regexp.MustCompile(`^\s*(\? )?([A-Za-z0-9_.$]+)\+0x([0-9a-f]+)/0x([0-9a-f]+)(?: \[([A-Za-z0-9_-]+)(?: [0-9a-f]+)?\])?\s*$`)

// addrFrameRE matches a frame the kernel found no symbol for.
var addrFrameRE = regexp.MustCompile(`^\s*(\? )?0x([0-9a-f]+)\s*$`)

// ParseFrame parses one call trace line. It returns false for anything
// else, the <TASK>/<IRQ> markers and register lines included.
func ParseFrame(line string) (Frame, bool) {
	if !strings.Contains(line, "0x") {
		return Frame{}, false
	}
	if m := frameRE.FindStringSubmatch(line); m != nil {
		off, err1 := strconv.ParseUint(m[3], 16, 64)
		size, err2 := strconv.ParseUint(m[4], 16, 64)
		if err1 != nil || err2 != nil {
			return Frame{}, false
		}
		f := Frame{Func: m[2], Offset: off, Size: size, Module: m[5], Reliable: m[1] == "", Raw: strings.TrimSpace(line)}
		if d := rustsym.Demangle(m[2]); d != m[2] {
			f.Func, f.Symbol = d, m[2]
		}
		return f, true
	}
	if m := addrFrameRE.FindStringSubmatch(line); m != nil {
		addr, err := strconv.ParseUint(m[2], 16, 64)
		if err != nil {
			return Frame{}, false
		}
		return Frame{Addr: addr, Reliable: m[1] == "", Raw: strings.TrimSpace(line)}, true
	}
	return Frame{}, false
}
