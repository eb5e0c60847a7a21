package module

import (
	"fmt"
	"strings"
)

// ParamWord returns the insmod argument that makes the kernel see the module parameter p
// ("name=value") with exactly that value.
//
// insmod joins its arguments with spaces into one string, and the kernel's parameter parser
// (next_arg in lib/cmdline.c) splits that string again at white space, except inside double
// quotes, which it strips. So a value holding white space is wrapped in double quotes, and a
// value already wrapped in them (the kernel's own syntax, as in modprobe.conf) is passed as
// it is. The parser has no escape for a double quote: a value holding one anywhere else
// cannot be passed, and is an error.
func ParamWord(p string) (string, error) {
	name, value, ok := strings.Cut(p, "=")
	inner := value
	if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
		inner = value[1 : len(value)-1]
	}
	switch {
	case !ok && (strings.ContainsRune(name, '"') || hasKernelSpace(name)):
		return "", fmt.Errorf("module parameter %q holds white space or a double quote but no '='; hint: write it as name=value", p)
	case strings.ContainsRune(inner, '"'):
		return "", fmt.Errorf("module parameter %q: its value holds a double quote, which the kernel's parameter parser cannot pass on (it has no escape for it); "+
			"hint: leave the quotes out: kmodvm wraps a value with spaces in double quotes for the kernel itself", p)
	case !ok || inner != value || !hasKernelSpace(value):
		return p, nil
	}
	return name + `="` + value + `"`, nil
}

// ParamWords applies ParamWord to each parameter.
func ParamWords(params []string) ([]string, error) {
	words := make([]string, len(params))
	for i, p := range params {
		w, err := ParamWord(p)
		if err != nil {
			return nil, err
		}
		words[i] = w
	}
	return words, nil
}

// hasKernelSpace reports whether s holds a byte the kernel's parameter parser splits at.
func hasKernelSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if kernelSpace(s[i]) {
			return true
		}
	}
	return false
}

// kernelSpace is the kernel's isspace (lib/ctype.c): ASCII white space and 0xA0, a no-break
// space in Latin-1 but also a UTF-8 continuation byte ("à" is C3 A0), so some UTF-8 text
// has to be quoted too.
func kernelSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\v', '\f', '\r', 0xA0:
		return true
	}
	return false
}
