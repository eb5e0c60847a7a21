package ktrace

import (
	"fmt"
	"strconv"
	"strings"
)

// Format renders a trace for a person, one frame a line:
//
//	Rust panic at rust_oops.rs:19:9: index out of bounds: the len is 3 but the index is 7
//	  panicked at /home/me/rust_oops/rust_oops.rs:19:9
//	  RIP   rust_helper_BUG  /src/linux/rust/helpers/bug.c:7
//	        kernel::rust_panic_fmt  /src/linux/rust/kernel/lib.rs:212
//	        <rust_oops::RustOops as kernel::Module>::init  /home/me/rust_oops/rust_oops.rs:19  [rust_oops]
//	          > let x = v[7];
//	      ? do_one_initcall+0x5b/0x310
//
// A frame without a source position keeps its offset; "?" marks the frames
// the unwinder only guessed, which are left out when it knew the others.
func Format(t Trace) string {
	var b strings.Builder
	b.WriteString(t.Title)
	b.WriteByte('\n')
	if t.Message != "" && !strings.Contains(t.Title, t.Message) {
		fmt.Fprintf(&b, "  %s\n", t.Message)
	}
	if t.KUnitTest != "" {
		fmt.Fprintf(&b, "  in the KUnit test %s\n", t.KUnitTest)
	}
	for _, l := range t.Locations {
		fmt.Fprintf(&b, "  %s %s\n", locationVerb(l.Kind), l.String())
	}
	top := t.TopModuleFrame()
	if t.RIP != nil {
		writeFrame(&b, "RIP", *t.RIP, top == t.RIP)
	}
	// An unwinder that knows the frames (ORC, frame pointers) gives the call chain as the
	// unmarked frames; the kernel still prints, marked "?", every other code address it
	// finds on the stack: leftovers of earlier calls, noise to a reader. They are left out
	// when there is a chain to read (and counted); the guess unwinder marks every frame,
	// and then all are shown. --json keeps them all.
	chain := false
	for _, f := range t.Frames {
		chain = chain || f.Reliable
	}
	hidden := 0
	for i := range t.Frames {
		f := &t.Frames[i]
		if chain && !f.Reliable && f != top {
			hidden++
			continue
		}
		writeFrame(&b, "", *f, f == top)
	}
	if hidden > 0 {
		fmt.Fprintf(&b, "        (%d stack %s marked \"?\" left out: leftovers the unwinder passed over)\n", hidden, plural(hidden, "entry", "entries"))
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func locationVerb(kind string) string {
	switch kind {
	case "panic":
		return "panicked at"
	case "bug":
		return "BUG at"
	case "warning":
		return "WARNING at"
	case "kunit":
		return "last line the test reached:"
	}
	return kind + " at"
}

// String is "file:line[:col]", the host file when there is one.
func (l Location) String() string {
	file := l.File
	if l.Host != "" {
		file = l.Host
	}
	s := file + ":" + strconv.Itoa(l.Line)
	if l.Col > 0 {
		s += ":" + strconv.Itoa(l.Col)
	}
	return s
}

func writeFrame(b *strings.Builder, label string, f Frame, top bool) {
	mark := "  "
	if !f.Reliable && label == "" {
		mark = "? "
	}
	fmt.Fprintf(b, "  %-4s%s%s", label, mark, f.String())
	b.WriteByte('\n')
	if top && f.Source != "" {
		fmt.Fprintf(b, "          > %s\n", f.Source)
	}
}

// String is "func  file:line  [module]", or "func+0xoff/0xsize  [module]"
// when the frame has no source position; no "?".
func (f Frame) String() string {
	var s string
	switch {
	case f.Func == "":
		s = "0x" + strconv.FormatUint(f.Addr, 16)
	case f.File != "":
		s = f.Func + "  " + f.File + ":" + strconv.Itoa(f.Line)
	default:
		s = fmt.Sprintf("%s+0x%x/0x%x", f.Func, f.Offset, f.Size)
	}
	if f.Module != "" {
		s += "  [" + f.Module + "]"
	}
	return s
}
