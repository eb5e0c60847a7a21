// Package rustsym demangles the Rust symbols a kernel prints: kmsg's report
// titles, ktrace's frames and the log lines run and logs print all read
// them through it, so a function has one name wherever kmodvm shows it.
package rustsym

import (
	"regexp"
	"strings"

	"github.com/ianlancetaylor/demangle"
)

// maxLength bounds a demangled name (2^10 bytes): a longer one, which
// only a hostile or corrupted symbol gives, stays mangled.
const maxLength = 10

// Demangle turns a Rust symbol, v0 ("_RNv…") or legacy ("_ZN…17h<hash>E"),
// into its path with generic arguments: "core::ptr::drop_in_place::<alloc::vec::Vec<()>>".
// Anything else, C names included, and a symbol it cannot parse come back
// unchanged.
func Demangle(sym string) string {
	if !isRustSymbol(sym) {
		return sym
	}
	return demangle.Filter(sym, demangle.MaxLength(maxLength))
}

// isRustSymbol keeps C++-looking names that are not Rust's from the demangler:
// the kernel has no C++, and a C identifier may start with "_Z".
func isRustSymbol(s string) bool {
	if strings.HasPrefix(s, "_R") {
		return true
	}
	if !strings.HasPrefix(s, "_ZN") {
		return false
	}
	base, _, _ := strings.Cut(s, ".") // .llvm.123 and similar suffixes
	n := len(base)
	return n > 23 && base[n-1] == 'E' && base[n-20:n-17] == "17h"
}

// symRE finds symbols inside a line of text.
var symRE = regexp.MustCompile(`_(?:R|ZN)[0-9A-Za-z_$.]+`)

// DemangleText demangles every Rust symbol in kernel log text.
func DemangleText(s string) string {
	if !strings.Contains(s, "_R") && !strings.Contains(s, "_ZN") {
		return s
	}
	return symRE.ReplaceAllStringFunc(s, func(sym string) string {
		// The kernel prints "sym+0x1/0x2": the match stops at '+', but a
		// trailing '.' of a sentence is not part of the symbol.
		trimmed := strings.TrimRight(sym, ".")
		return Demangle(trimmed) + sym[len(trimmed):]
	})
}
