package kmsg

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Taint is the kernel's taint bit mask, as in /proc/sys/kernel/tainted.
type Taint uint64

// Taint bits (Documentation/admin-guide/tainted-kernels.rst).
const (
	TaintProprietary Taint = 1 << 0  // P
	TaintDie         Taint = 1 << 7  // D
	TaintWarn        Taint = 1 << 9  // W
	TaintOutOfTree   Taint = 1 << 12 // O
	TaintUnsigned    Taint = 1 << 13 // E
	TaintSoftLockup  Taint = 1 << 14 // L
	TaintTest        Taint = 1 << 18 // N
)

// taintFlags lists the flags in bit order, as kernel/panic.c does.
var taintFlags = [...]struct {
	letter byte
	desc   string
}{
	{'P', "proprietary module was loaded"},
	{'F', "module was force loaded"},
	{'S', "kernel running on an out of specification system"},
	{'R', "module was force unloaded"},
	{'M', "processor reported a Machine Check Exception"},
	{'B', "bad page referenced or some unexpected page flags"},
	{'U', "taint requested by userspace application"},
	{'D', "kernel died recently: an oops or BUG happened"},
	{'A', "ACPI table overridden by user"},
	{'W', "kernel issued a warning: a WARN fired"},
	{'C', "staging driver was loaded"},
	{'I', "workaround for bug in platform firmware applied"},
	{'O', "externally-built (out-of-tree) module was loaded"},
	{'E', "unsigned module was loaded"},
	{'L', "soft lockup occurred"},
	{'K', "kernel has been live patched"},
	{'X', "auxiliary taint, defined for and used by distros"},
	{'T', "kernel was built with the struct randomization plugin"},
	{'N', "an in-kernel test has been run"},
	{'J', "userspace used a mutating debug operation in fwctl"},
}

// ParseTaint parses the decimal number read from /proc/sys/kernel/tainted.
func ParseTaint(s string) (Taint, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse kernel taint %q: want the decimal number from /proc/sys/kernel/tainted: %w", s, err)
	}
	return Taint(n), nil
}

// Flags returns the letters of the set flags in the kernel's order, e.g.
// "WOE"; "" when untainted. Bits the kernel does not define yet show as
// "#<bit>".
func (t Taint) Flags() string {
	var b strings.Builder
	for t != 0 {
		bit := bits.TrailingZeros64(uint64(t))
		t &^= 1 << bit
		if bit < len(taintFlags) {
			b.WriteByte(taintFlags[bit].letter)
		} else {
			fmt.Fprintf(&b, "#%d", bit)
		}
	}
	return b.String()
}

// String returns the taint as the kernel prints it: "Not tainted" or
// "Tainted: G        W  O".
func (t Taint) String() string {
	if t == 0 {
		return "Not tainted"
	}
	col := make([]byte, len(taintFlags))
	for i, f := range taintFlags {
		col[i] = ' '
		if t&(1<<i) != 0 {
			col[i] = f.letter
		}
	}
	if t&TaintProprietary == 0 {
		col[0] = 'G'
	}
	s := "Tainted: " + strings.TrimRight(string(col), " ")
	if extra := t >> len(taintFlags); extra != 0 {
		s += " " + (extra << len(taintFlags)).Flags()
	}
	return s
}

// Describe explains each set flag: "W (kernel issued a warning: a WARN
// fired), D (…)".
func (t Taint) Describe() string {
	var parts []string
	for t != 0 {
		bit := bits.TrailingZeros64(uint64(t))
		t &^= 1 << bit
		if bit < len(taintFlags) {
			parts = append(parts, fmt.Sprintf("%c (%s)", taintFlags[bit].letter, taintFlags[bit].desc))
		} else {
			parts = append(parts, fmt.Sprintf("#%d (taint bit %d, unknown to kmodvm)", bit, bit))
		}
	}
	return strings.Join(parts, ", ")
}

// Died says whether the kernel oopsed (flag D): an Oops, a BUG, a Rust panic in process
// context. Such a kernel keeps running but may hold locks, leaked memory or a module stuck in
// Loading; nothing later run in it can be trusted.
func (t Taint) Died() bool { return t&TaintDie != 0 }

// NewTaint returns the bits set in after but not in before.
func NewTaint(before, after Taint) (added Taint) {
	return after &^ before
}

// expectedTaint is what loading any out-of-tree, unsigned module sets, plus
// N, which KUnit sets as soon as a module's test suites run at insmod: a
// test module is expected to set it, and a failing test is reported by its
// result, not by the taint.
const expectedTaint = TaintOutOfTree | TaintUnsigned | TaintTest

// JudgeTaint returns a "taint" finding when loading a module set taint
// flags other than O (out-of-tree), E (unsigned) and N (a KUnit test ran);
// nil otherwise. The finding's Line is -1: it comes from
// /proc/sys/kernel/tainted, not from a log record.
func JudgeTaint(before, after Taint) *Finding {
	added := NewTaint(before, after) &^ expectedTaint
	if added == 0 {
		return nil
	}
	f := &Finding{
		Class:  ClassTaint,
		Title:  "kernel taint added: " + added.Describe(),
		Line:   -1,
		Report: []string{"before: " + before.String(), "after:  " + after.String()},
	}
	return f
}

// taintBit is the bit of the flag letter, or -1.
func taintBit(letter byte) int {
	for i, f := range taintFlags {
		if f.letter == letter {
			return i
		}
	}
	return -1
}
