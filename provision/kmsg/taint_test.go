package kmsg

import (
	"strings"
	"testing"
)

func TestParseTaint(t *testing.T) {
	for in, want := range map[string]Taint{"0": 0, "12288\n": 12288, " 4609 ": 4609} {
		if got, err := ParseTaint(in); err != nil || got != want {
			t.Errorf("ParseTaint(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "G O", "0x10"} {
		if _, err := ParseTaint(in); err == nil || !strings.Contains(err.Error(), "/proc/sys/kernel/tainted") {
			t.Errorf("ParseTaint(%q) error = %v, want one naming /proc/sys/kernel/tainted", in, err)
		}
	}
}

func TestTaintFlags(t *testing.T) {
	tests := []struct {
		t            Taint
		flags, print string
	}{
		{0, "", "Not tainted"},
		{TaintOutOfTree, "O", "Tainted: G           O"},
		{TaintOutOfTree | TaintUnsigned, "OE", "Tainted: G           OE"},
		{4609, "PWO", "Tainted: P        W  O"}, // the example in tainted-kernels.rst
		{TaintDie | TaintWarn | TaintOutOfTree | TaintUnsigned | TaintSoftLockup, "DWOEL", "Tainted: G      D W  OEL"},
		{1 << 19, "J", "Tainted: G                  J"},
		{TaintOutOfTree | TaintUnsigned | TaintTest, "OEN", "Tainted: G           OE    N"},
		{1<<12 | 1<<25, "O#25", "Tainted: G           O #25"},
	}
	for _, tt := range tests {
		if got := tt.t.Flags(); got != tt.flags {
			t.Errorf("Taint(%d).Flags() = %q, want %q", tt.t, got, tt.flags)
		}
		if got := tt.t.String(); got != tt.print {
			t.Errorf("Taint(%d).String() = %q, want %q", tt.t, got, tt.print)
		}
	}
}

func TestJudgeTaint(t *testing.T) {
	oe := TaintOutOfTree | TaintUnsigned
	tests := []struct {
		name          string
		before, after Taint
		want          string // "" for nil
	}{
		{"nothing", 0, 0, ""},
		{"out-of-tree and unsigned are expected", 0, oe, ""},
		{"already warned before", TaintWarn, TaintWarn | oe, ""},
		{"a KUnit suite ran at insmod", 0, oe | TaintTest, ""},
		{"a KUnit test oopsed", 0, oe | TaintTest | TaintDie, "kernel taint added: D (kernel died recently: an oops or BUG happened)"},
		{"a WARN fired", 0, oe | TaintWarn, "kernel taint added: W (kernel issued a warning: a WARN fired)"},
		{"an oops", oe, oe | TaintDie | TaintWarn, "kernel taint added: D (kernel died recently: an oops or BUG happened), W (kernel issued a warning: a WARN fired)"},
		{"proprietary", 0, TaintProprietary | oe, "kernel taint added: P (proprietary module was loaded)"},
		{"a bit kmodvm does not know", 0, 1 << 30, "kernel taint added: #30 (taint bit 30, unknown to kmodvm)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := JudgeTaint(tt.before, tt.after)
			switch {
			case tt.want == "" && f != nil:
				t.Errorf("got finding %q, want none", f.Title)
			case tt.want != "" && f == nil:
				t.Errorf("got no finding, want %q", tt.want)
			case f != nil:
				if f.Title != tt.want || f.Class != ClassTaint || f.Line != -1 || len(f.Report) != 2 {
					t.Errorf("got %+v, want title %q", *f, tt.want)
				}
			}
		})
	}
	if got := NewTaint(TaintWarn|TaintOutOfTree, TaintOutOfTree|TaintDie); got != TaintDie {
		t.Errorf("NewTaint = %q, want D", got.Flags())
	}
}
