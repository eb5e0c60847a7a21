// Package kconfig parses, merges, serializes and verifies Linux kernel
// .config files, and reads a kernel tree's Kconfig files to explain why
// Kconfig dropped or changed an option that was asked for.
//
// Kconfig silently drops options whose dependencies fail (CONFIG_RUST above
// all). Verify turns that into one precise error that names each option, what
// was wanted, what came out, and the unmet dependency with the value of every
// symbol in it, the way menuconfig shows it: "RUST_IS_AVAILABLE [=n]".
package kconfig

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Prefix is the prefix every symbol carries in a .config file.
const Prefix = "CONFIG_"

// Config is an ordered set of symbol assignments. Symbols are stored without
// the CONFIG_ prefix. A value is "y", "m", "n" (written as
// "# CONFIG_X is not set"), a quoted string kept verbatim with its quotes, or
// a decimal or hex number.
type Config struct {
	entries []entry
	index   map[string]int
}

// entry is one assignment plus where it came from, for error messages.
type entry struct {
	sym, val string
	src      string // fragment name; empty when parsed without a name
	line     int    // 1-based line in src; 0 when set by code
}

// New returns an empty Config.
func New() *Config {
	return &Config{index: map[string]int{}}
}

// Parse reads .config or fragment syntax: "CONFIG_X=value" and
// "# CONFIG_X is not set" lines; blank lines and other comments are skipped.
// A symbol assigned twice keeps the last value (as Kconfig does). Any other
// line is an error that names its line number.
func Parse(r io.Reader) (*Config, error) {
	return parse(r, "", false)
}

// parse reads r. With strict set, a symbol given two different values is an
// error naming both lines. src names the input in origins and errors.
func parse(r io.Reader, src string, strict bool) (*Config, error) {
	c := New()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	where := func(n int) string {
		if src == "" {
			return fmt.Sprintf("line %d", n)
		}
		return fmt.Sprintf("%s:%d", src, n)
	}
	n := 0
	for sc.Scan() {
		n++
		sym, val, ok, err := parseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where(n), err)
		}
		if !ok {
			continue
		}
		if strict {
			if i, dup := c.index[sym]; dup && c.entries[i].val != val {
				prev := c.entries[i]
				return nil, fmt.Errorf("%s: %s%s is set twice with different values: %s at line %d and %s at line %d; keep one",
					where(n), Prefix, sym, formatAssign(sym, prev.val), prev.line, formatAssign(sym, val), n)
			}
		}
		c.set(entry{sym: sym, val: val, src: src, line: n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read config after %s: %w", where(n), err)
	}
	return c, nil
}

// parseLine parses one line. ok is false for blank lines and comments.
func parseLine(raw string) (sym, val string, ok bool, err error) {
	line := strings.TrimSpace(raw)
	if line == "" {
		return "", "", false, nil
	}
	if strings.HasPrefix(line, "#") {
		rest, found := strings.CutPrefix(line, "# "+Prefix)
		if !found {
			return "", "", false, nil
		}
		name, found := strings.CutSuffix(rest, " is not set")
		if !found || !validSymbol(name) {
			return "", "", false, nil // an ordinary comment
		}
		if strings.HasPrefix(name, Prefix) {
			return "", "", false, fmt.Errorf("cannot parse %q: doubled %s prefix", line, Prefix)
		}
		return name, "n", true, nil
	}
	rest, found := strings.CutPrefix(line, Prefix)
	if !found {
		return "", "", false, fmt.Errorf("cannot parse %q: expected CONFIG_NAME=value, \"# CONFIG_NAME is not set\" or a # comment", line)
	}
	name, v, found := strings.Cut(rest, "=")
	if !found {
		return "", "", false, fmt.Errorf("cannot parse %q: missing =value (write %s%s=y, or \"# %s%s is not set\" to turn it off)", line, Prefix, name, Prefix, name)
	}
	if !validSymbol(name) {
		return "", "", false, fmt.Errorf("cannot parse %q: %q is not a valid symbol name (letters, digits and _ only)", line, name)
	}
	if strings.HasPrefix(name, Prefix) {
		return "", "", false, fmt.Errorf("cannot parse %q: doubled %s prefix", line, Prefix)
	}
	if err := ValidValue(v); err != nil {
		return "", "", false, fmt.Errorf("cannot parse %q: %w", line, err)
	}
	return name, v, true, nil
}

// ValidValue reports whether v can be written in a .config: y, m, n, a
// decimal number, a hex number (with or without 0x) or a double-quoted string
// whose inner quotes and backslashes are escaped with a backslash.
func ValidValue(v string) error {
	switch {
	case v == "y" || v == "m" || v == "n":
		return nil
	case v == "":
		return fmt.Errorf("empty value: use y, m, a number, \"\" for an empty string, or \"# CONFIG_NAME is not set\"")
	case v[0] == '"':
		return validQuoted(v)
	case isDecimal(v) || isHex(v):
		return nil
	}
	return fmt.Errorf("invalid value %q: use y, m, n, a number, 0x-hex or a \"quoted string\"", v)
}

func validQuoted(v string) error {
	if len(v) < 2 || v[len(v)-1] != '"' {
		return fmt.Errorf("unterminated string %s", v)
	}
	in := v[1 : len(v)-1]
	for i := 0; i < len(in); i++ {
		switch in[i] {
		case '\\':
			if i == len(in)-1 {
				return fmt.Errorf("string %s ends in a lone backslash", v)
			}
			i++
		case '"':
			return fmt.Errorf("string %s has an unescaped quote inside (write \\\")", v)
		case '\n':
			return fmt.Errorf("string %s contains a newline", v)
		}
	}
	return nil
}

func isDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func isHex(s string) bool {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		s = s[2:]
	}
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

func validSymbol(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// normSym strips an optional CONFIG_ prefix.
func normSym(sym string) string {
	return strings.TrimPrefix(sym, Prefix)
}

// Value returns the value of sym ("RUST" or "CONFIG_RUST"). A symbol written
// as "# CONFIG_X is not set" has the value "n".
func (c *Config) Value(sym string) (string, bool) {
	i, ok := c.index[normSym(sym)]
	if !ok {
		return "", false
	}
	return c.entries[i].val, true
}

// Set assigns val to sym, keeping the symbol's position if it is already
// present. val is stored as given; check it with ValidValue first when it
// comes from a user, or Bytes may write a line Parse rejects.
func (c *Config) Set(sym, val string) {
	c.set(entry{sym: normSym(sym), val: val})
}

func (c *Config) set(e entry) {
	if i, ok := c.index[e.sym]; ok {
		c.entries[i] = e
		return
	}
	c.index[e.sym] = len(c.entries)
	c.entries = append(c.entries, e)
}

// Unset removes sym; Bytes will not mention it at all.
func (c *Config) Unset(sym string) {
	sym = normSym(sym)
	i, ok := c.index[sym]
	if !ok {
		return
	}
	c.entries = slices.Delete(c.entries, i, i+1)
	delete(c.index, sym)
	for j := i; j < len(c.entries); j++ {
		c.index[c.entries[j].sym] = j
	}
}

// Len returns the number of symbols.
func (c *Config) Len() int { return len(c.entries) }

// Symbols returns the symbols in order, without the CONFIG_ prefix.
func (c *Config) Symbols() []string {
	out := make([]string, len(c.entries))
	for i, e := range c.entries {
		out[i] = e.sym
	}
	return out
}

// Origin says where sym's value came from ("kvm_guest.config:12"), or "" when
// unknown.
func (c *Config) Origin(sym string) string {
	i, ok := c.index[normSym(sym)]
	if !ok {
		return ""
	}
	e := c.entries[i]
	switch {
	case e.src != "" && e.line > 0:
		return fmt.Sprintf("%s:%d", e.src, e.line)
	case e.src != "":
		return e.src
	case e.line > 0:
		return fmt.Sprintf("line %d", e.line)
	}
	return ""
}

// Clone returns an independent copy.
func (c *Config) Clone() *Config {
	out := &Config{entries: slices.Clone(c.entries), index: make(map[string]int, len(c.index))}
	for k, v := range c.index {
		out.index[k] = v
	}
	return out
}

// formatAssign renders one assignment as a .config line.
func formatAssign(sym, val string) string {
	if val == "n" {
		return "# " + Prefix + sym + " is not set"
	}
	return Prefix + sym + "=" + val
}

// Bytes serializes the config in order, one assignment per line.
// Parse(Bytes()) gives back the same symbols and values.
func (c *Config) Bytes() []byte {
	var b bytes.Buffer
	for _, e := range c.entries {
		b.WriteString(formatAssign(e.sym, e.val))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// Hash returns the sha256 (hex) of the assignments sorted by symbol: configs
// with equal assignments hash equally whatever their order and comments. "n"
// and absent are different here, as they are in a .config.
func (c *Config) Hash() string {
	sorted := slices.Clone(c.entries)
	slices.SortFunc(sorted, func(a, b entry) int { return strings.Compare(a.sym, b.sym) })
	h := sha256.New()
	for _, e := range sorted {
		io.WriteString(h, formatAssign(e.sym, e.val))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Change is one difference between two configs. An empty Old or New means
// the symbol is absent.
type Change struct {
	Symbol string `json:"symbol"`
	Old    string `json:"old"`
	New    string `json:"new"`
}

// String renders the change as "+CONFIG_X=y", "-CONFIG_X=y" or
// "CONFIG_X: 14 -> 17".
func (ch Change) String() string {
	switch {
	case ch.Old == "":
		return "+" + Prefix + ch.Symbol + "=" + ch.New
	case ch.New == "":
		return "-" + Prefix + ch.Symbol + "=" + ch.Old
	}
	return Prefix + ch.Symbol + ": " + ch.Old + " -> " + ch.New
}

// Diff lists what final added, changed or removed relative to base, sorted by
// symbol. "n" and absent count as the same value, so a symbol that only went
// from absent to "# ... is not set" is not a change.
func Diff(base, final *Config) []Change {
	var out []Change
	off := func(v string) bool { return v == "" || v == "n" }
	seen := map[string]bool{}
	for _, c := range []*Config{base, final} {
		for _, e := range c.entries {
			if seen[e.sym] {
				continue
			}
			seen[e.sym] = true
			o, _ := base.Value(e.sym)
			n, _ := final.Value(e.sym)
			if o == n || off(o) && off(n) {
				continue
			}
			out = append(out, Change{Symbol: e.sym, Old: o, New: n})
		}
	}
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.Symbol, b.Symbol) })
	return out
}
