package builddiag

import (
	"fmt"
	"strconv"
	"strings"
)

// pred is a Rust cfg predicate: `CONFIG_X`, `CONFIG_X = "y"`, `not(P)`, `all(P, ...)`,
// `any(P, ...)`.
type pred struct {
	op       string // "atom", "not", "all" or "any"
	name     string // atom: the cfg name
	value    string // atom: the value of `name = "value"`
	hasValue bool
	args     []*pred
}

// maxDepth bounds the nesting parsePred accepts: the kernel's predicates nest three deep.
const maxDepth = 32

// parsePred parses the text inside `#[cfg(...)]`.
func parsePred(s string) (*pred, error) {
	p := &predParser{toks: tokenize(s)}
	e, err := p.pred(0)
	if err != nil {
		return nil, fmt.Errorf("parse cfg(%s): %w", s, err)
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("parse cfg(%s): unexpected %q", s, p.toks[p.i])
	}
	return e, nil
}

// tokenize splits a predicate into names, string literals (with their quotes) and the
// punctuation ( ) , =.
func tokenize(s string) []string {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case strings.IndexByte("(),=", c) >= 0:
			toks = append(toks, string(c))
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(s))
			toks = append(toks, s[i:j])
			i = j
		default:
			j := i
			for j < len(s) && strings.IndexByte(" \t\n(),=\"", s[j]) < 0 {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks
}

type predParser struct {
	toks []string
	i    int
}

func (p *predParser) next() string {
	if p.i >= len(p.toks) {
		return ""
	}
	t := p.toks[p.i]
	p.i++
	return t
}

func (p *predParser) peek() string {
	if p.i >= len(p.toks) {
		return ""
	}
	return p.toks[p.i]
}

func (p *predParser) pred(depth int) (*pred, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxDepth)
	}
	name := p.next()
	if !isName(name) {
		return nil, fmt.Errorf("expected a name, found %q", name)
	}
	switch {
	case p.peek() == "(" && (name == "all" || name == "any" || name == "not"):
		p.next()
		e := &pred{op: name}
		for p.peek() != ")" {
			a, err := p.pred(depth + 1)
			if err != nil {
				return nil, err
			}
			e.args = append(e.args, a)
			if p.peek() != "," {
				break
			}
			p.next()
		}
		if t := p.next(); t != ")" {
			return nil, fmt.Errorf("expected ) after %s(, found %q", name, t)
		}
		if name == "not" && len(e.args) != 1 {
			return nil, fmt.Errorf("not() takes one predicate, has %d", len(e.args))
		}
		return e, nil
	case p.peek() == "=":
		p.next()
		lit := p.next()
		v, err := strconv.Unquote(lit)
		if err != nil {
			return nil, fmt.Errorf("expected a string after %s =, found %q", name, lit)
		}
		return &pred{op: "atom", name: name, value: v, hasValue: true}, nil
	}
	return &pred{op: "atom", name: name}, nil
}

func isName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c != '_' && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// String renders the predicate as Rust writes it.
func (e *pred) String() string {
	if e.op == "atom" {
		if e.hasValue {
			return e.name + " = " + strconv.Quote(e.value)
		}
		return e.name
	}
	var args []string
	for _, a := range e.args {
		args = append(args, a.String())
	}
	return e.op + "(" + strings.Join(args, ", ") + ")"
}

// values are a kernel's config values, by symbol with its CONFIG_ prefix, as its .config
// writes them; nil when its config is not known.
type values func(sym string) (string, bool)

// outcome is what it takes to make a predicate hold.
type outcome struct {
	holds bool      // it holds already
	needs []Setting // it holds once these are set (holds and needs empty: no one can tell)
}

// need finds the kernel options that would make e hold (or, negated, fail) in a kernel
// whose config is val. A name other than CONFIG_* (MODULE, testlib, feature = "std") is set
// by the build, not the kernel's config: it neither holds nor can be made to.
func need(e *pred, negated bool, val values) outcome {
	switch e.op {
	case "not":
		return need(e.args[0], !negated, val)
	case "all", "any":
		// all() under negation is any() of the negations, and the reverse.
		every := (e.op == "all") != negated
		var subs []outcome
		for _, a := range e.args {
			subs = append(subs, need(a, negated, val))
		}
		if every {
			return needAll(subs)
		}
		return needAny(subs)
	}
	if !strings.HasPrefix(e.name, "CONFIG_") {
		return outcome{}
	}
	var cur string
	known := val != nil
	if known {
		if v, ok := val(e.name); ok {
			cur = v
		} else {
			cur = "n"
		}
	}
	on := cur == "y" || cur == "m"
	holds := on
	if e.hasValue {
		holds = cfgValue(cur) == e.value
	}
	if known && holds != negated {
		return outcome{holds: true}
	}
	s := Setting{Symbol: e.name, Value: cur, Want: "y"}
	switch {
	case negated:
		s.Want = "n"
	case e.hasValue:
		s.Want = e.value
	}
	return outcome{needs: []Setting{s}}
}

// needAll is what it takes to make every one of subs hold: what each needs.
func needAll(subs []outcome) outcome {
	o := outcome{holds: true}
	for _, s := range subs {
		o.holds = o.holds && s.holds
		for _, n := range s.needs {
			if !hasSymbol(o.needs, n.Symbol) {
				o.needs = append(o.needs, n)
			}
		}
	}
	if len(o.needs) > 0 {
		o.holds = false
	}
	return o
}

// needAny is what it takes to make one of subs hold: nothing when one does, else the
// shortest list of settings one of them needs.
func needAny(subs []outcome) outcome {
	var best outcome
	for _, s := range subs {
		if s.holds {
			return s
		}
		if len(s.needs) > 0 && (len(best.needs) == 0 || len(s.needs) < len(best.needs)) {
			best = s
		}
	}
	return best
}

func hasSymbol(ss []Setting, sym string) bool {
	for _, s := range ss {
		if s.Symbol == sym {
			return true
		}
	}
	return false
}

// cfgValue is the value rustc's cfg has for a .config value (include/generated/rustc_cfg):
// a string unquoted, a hex number with its 0x.
func cfgValue(v string) string {
	if u, err := strconv.Unquote(v); err == nil && strings.HasPrefix(v, `"`) {
		return u
	}
	return v
}

// fragmentValue is how a .config line writes the value a cfg compares with.
func fragmentValue(v string) string {
	switch {
	case v == "y" || v == "m" || v == "n", isNumber(v):
		return v
	}
	return strconv.Quote(v)
}

func isNumber(v string) bool {
	if h, ok := strings.CutPrefix(v, "0x"); ok {
		_, err := strconv.ParseUint(h, 16, 64)
		return err == nil && h != ""
	}
	_, err := strconv.ParseInt(v, 10, 64)
	return err == nil
}
