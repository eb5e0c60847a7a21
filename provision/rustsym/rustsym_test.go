package rustsym

import (
	"strings"
	"testing"
)

// demangleCase is an input and what a demangling function makes of it.
type demangleCase struct{ in, want string }

// checkDemangling runs f, named name, on each case's input.
func checkDemangling(t *testing.T, name string, f func(string) string, cases []demangleCase) {
	t.Helper()
	for _, c := range cases {
		if got := f(c.in); got != c.want {
			t.Errorf("%s(%q) = %q, want %q", name, c.in, got, c.want)
		}
	}
}

func TestDemangle(t *testing.T) {
	checkDemangling(t, "Demangle", Demangle, []demangleCase{
		{"_RNvXCs7pXBtqNa9yW_9rust_oopsNtB2_8RustOopsNtCsbDqzXfLQacH_6kernel6Module4init", "<rust_oops::RustOops as kernel::Module>::init"},
		{"_RNvXCs5Rd3xvvgW4W_10rust_helloNtB2_9RustHelloNtCsbDqzXfLQacH_6kernel6Module4init", "<rust_hello::RustHello as kernel::Module>::init"},
		{"_RNvCsbDqzXfLQacH_6kernel14rust_panic_fmt", "kernel::rust_panic_fmt"},
		{"_RNvNtCs1DvzXD3mKbO_4core9panicking18panic_bounds_check", "core::panicking::panic_bounds_check"},
		{"_RINvNtCs1_4core3ptr13drop_in_placeINtNtCs2_5alloc3vec3VecuEEB4_.llvm.123", "core::ptr::drop_in_place::<alloc::vec::Vec<()>>"},
		{"_RNvMNtCs1234_6kernel4syncINtB2_5MutexpE4lock", "<kernel::sync::Mutex<_>>::lock"},
		{"_RNCNvCs1234_5hello4main0B3_", "hello::main::{closure#0}"},
		{"_RNvMs_NtCs1234_6kernel3strNtB4_4CStr6as_ptr.llvm.1234", "<kernel::str::CStr>::as_ptr"},
		{"_RNvXs0_Cs1234_5helloRShNtNtCsx_4core3fmt7Display3fmt", "<&[u8] as core::fmt::Display>::fmt"},
		{"_ZN4core9panicking5panic17h0123456789abcdefE", "core::panicking::panic"},
		{"_ZN4core9panicking5panicE", "_ZN4core9panicking5panicE"}, // no Rust hash: not Rust's
		{"_Z3foov", "_Z3foov"},
		{"hello_init", "hello_init"},
		{"_Rbroken", "_Rbroken"},
		{"_R", "_R"},
		{"_RNvB_4x", "_RNvB_4x"},           // backref to itself
		{"_RNv5abc", "_RNv5abc"},           // truncated
		{"_RC999999999x", "_RC999999999x"}, // absurd length
		{"_RNvFE1a", "_RNvFE1a"},
	})
}

// A name longer than the bound is cut there rather than fill a screen.
func TestDemangleBounded(t *testing.T) {
	// A path of 200 nested modules named "abcdefgh": 2000 bytes demangled.
	sym := "_R" + strings.Repeat("Nt", 200) + "Cs1_1c" + strings.Repeat("8abcdefgh", 200)
	got := Demangle(sym)
	if len(got) > 1<<maxLength || !strings.HasPrefix(got, "c::abcdefgh::abcdefgh") {
		t.Errorf("Demangle of a 2000-byte path = %d bytes %.40q…, want the path cut at %d bytes", len(got), got, 1<<maxLength)
	}
}

func TestDemangleText(t *testing.T) {
	checkDemangling(t, "DemangleText", DemangleText, []demangleCase{
		{"WARNING at _RNvCsba7VXYN6cTp_9rust_oops5check+0x3c/0x3c [rust_oops], in _ZN4core9panicking5panic17h0123456789abcdefE.",
			"WARNING at rust_oops::check+0x3c/0x3c [rust_oops], in core::panicking::panic."},
		{"RIP: 0010:_RNvCsbDqzXfLQacH_6kernel14rust_panic_fmt+0x52/0x60", "RIP: 0010:kernel::rust_panic_fmt+0x52/0x60"},
		{"hello: loaded", "hello: loaded"},
		{"_Rnot_a_symbol", "_Rnot_a_symbol"},
	})
}

func FuzzDemangle(f *testing.F) {
	f.Add("_RNvXCs5Rd3xvvgW4W_10rust_helloNtB2_9RustHelloNtCsbDqzXfLQacH_6kernel6Module4init")
	f.Add("_RNvMNtCs1234_6kernel4syncINtB2_5MutexpE4lock")
	f.Add("_RNvXs0_Cs1234_5helloRShNtNtCsx_4core3fmt7Display3fmt")
	f.Fuzz(func(t *testing.T, sym string) {
		if got := Demangle(sym); got != sym && len(got) > 1<<maxLength {
			t.Fatalf("Demangle(%q) is %d bytes long", sym, len(got))
		}
	})
}
