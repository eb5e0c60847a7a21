package vm

import "strings"

// Quote returns s as one single-quoted POSIX shell word: the remote shell
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

// QuoteArgs quotes each argument with Quote and joins them with spaces,
// giving a command line that the remote shell splits back into exactly
// args.
func QuoteArgs(args ...string) string {
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = Quote(a)
	}
	return strings.Join(quoted, " ")
}
