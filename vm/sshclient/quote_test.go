package sshclient

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/shellquote"
)

// sshQuoteCases are hostile words for the remote shell; package shellquote tests many more
// through a local one.
var sshQuoteCases = []struct {
	name string
	args []string
}{
	{"empty", []string{"", "a"}},
	{"single quotes", []string{"it's", "'"}},
	{"separators and substitutions", []string{"a; rm -rf /", "$(id)", "`id`", "$HOME"}},
	{"globs", []string{"*", "~"}},
	{"newlines and backslashes", []string{"line1\nline2", `a\nb`}},
}

// TestQuotedCommandOverSSH does the same through Client.Run, whose server
// runs commands with /bin/sh -c as sshd does.
func TestQuotedCommandOverSSH(t *testing.T) {
	c := newSSHFixture(t).dial(t)
	for _, tt := range sshQuoteCases {
		t.Run(tt.name, func(t *testing.T) {
			var stdout bytes.Buffer
			cmd := shellquote.Join(append([]string{"printf", `%s\n`}, tt.args...)...)
			code, err := c.Run(context.Background(), cmd, nil, &stdout, nil)
			if err != nil || code != 0 {
				t.Fatalf("Run(%q) = %d, %v", cmd, code, err)
			}
			if want := strings.Join(tt.args, "\n") + "\n"; stdout.String() != want {
				t.Errorf("Run(%q) printed %q, want %q", cmd, stdout.String(), want)
			}
		})
	}
}
