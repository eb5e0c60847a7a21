// Package shellquote writes POSIX shell words: the one quoter for command lines a shell
// will split (guest commands over SSH) and for command lines in logs a user may paste.
package shellquote

import "strings"

// Quote returns s as one single-quoted POSIX shell word: a shell
// passes it through unchanged, with no expansion of $, `, \, globs or
// newlines. A single quote inside s is written as quote, backslash, quote,
// quote (close the word, an escaped quote, reopen the word).
// Shell words cannot hold NUL bytes; s must not contain any.
//
// Every word is quoted, even harmless ones, so that none can turn into a
// reserved word (if, for) or an assignment (A=b) in command position.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each argument with Quote and joins them with spaces, giving a
// command line that a shell splits back into exactly args.
func Join(args ...string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = Quote(a)
	}
	return strings.Join(quoted, " ")
}
