package shellquote

import (
	"os/exec"
	"strings"
	"testing"
)

var quoteCases = []struct {
	name string
	args []string
}{
	{"plain", []string{"insmod", "hello.ko"}},
	{"empty", []string{""}},
	{"empty among others", []string{"a", "", "b"}},
	{"spaces", []string{"a b", "  lead and trail  ", "\ttab"}},
	{"single quotes", []string{"it's", "'", "''", "'a'b'"}},
	{"double quotes", []string{`say "hi"`, `"`}},
	{"separators", []string{"a; rm -rf /", "a && b", "a | b", "a & b", "a > /tmp/x"}},
	{"substitutions", []string{"$(id)", "`id`", "$HOME", "${PATH}", "$((1+1))"}},
	{"globs", []string{"*", "?", "[a-z]*", "~", "~root"}},
	{"newlines", []string{"line1\nline2", "\n", "trailing\n"}},
	{"backslashes", []string{`\`, `a\nb`, `\\'`}},
	{"reserved words and assignments", []string{"if", "then", "!", "{", "A=b", "for"}},
	{"unicode", []string{"héllo wörld", "日本"}},
	{"option-like", []string{"-n", "--", "-e"}},
}

// TestJoinLocalShell proves quoting by running the words through a
// real /bin/sh and reading them back one per line.
func TestJoinLocalShell(t *testing.T) {
	for _, tt := range quoteCases {
		t.Run(tt.name, func(t *testing.T) {
			script := "printf '%s\\n' " + Join(tt.args...)
			out, err := exec.Command("/bin/sh", "-c", script).Output()
			if err != nil {
				t.Fatalf("sh -c %q: %v", script, err)
			}
			if want := strings.Join(tt.args, "\n") + "\n"; string(out) != want {
				t.Errorf("sh -c %q printed %q, want %q", script, out, want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"abc", "'abc'"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$(id)", "'$(id)'"},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got, want := Join("echo", "a b", ""), `'echo' 'a b' ''`; got != want {
		t.Errorf("Join = %s, want %s", got, want)
	}
	if got := Join(); got != "" {
		t.Errorf("Join() = %q, want empty", got)
	}
}
