package kconfig

import (
	"strconv"
	"strings"
)

// Kconfig expressions, just enough to evaluate "depends on" clauses against a
// final .config and to show them the way menuconfig does:
// "!MODVERSIONS [=y] || GENDWARFKSYMS [=n]".

type tokKind int

const (
	tSym tokKind = iota // symbol or constant (y, 42, "str", $(macro))
	tNot
	tAnd
	tOr
	tLParen
	tRParen
	tCmp // = != < <= > >=
)

type token struct {
	kind tokKind
	text string
}

func tokenize(s string) []token {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			i++
		case strings.HasPrefix(s[i:], "&&"):
			out = append(out, token{tAnd, "&&"})
			i += 2
		case strings.HasPrefix(s[i:], "||"):
			out = append(out, token{tOr, "||"})
			i += 2
		case strings.HasPrefix(s[i:], "!="), strings.HasPrefix(s[i:], "<="), strings.HasPrefix(s[i:], ">="):
			out = append(out, token{tCmp, s[i : i+2]})
			i += 2
		case c == '!':
			out = append(out, token{tNot, "!"})
			i++
		case c == '=' || c == '<' || c == '>':
			out = append(out, token{tCmp, s[i : i+1]})
			i++
		case c == '(':
			out = append(out, token{tLParen, "("})
			i++
		case c == ')':
			out = append(out, token{tRParen, ")"})
			i++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			j = min(j+1, len(s))
			out = append(out, token{tSym, s[i:j]})
			i = j
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			depth, j := 0, i+1
			for ; j < len(s); j++ {
				if s[j] == '(' {
					depth++
				} else if s[j] == ')' {
					depth--
					if depth == 0 {
						j++
						break
					}
				}
			}
			out = append(out, token{tSym, s[i:j]})
			i = j
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t&|!=<>()\"'", rune(s[j])) {
				j++
			}
			if j == i { // a lone & or |
				j++
			}
			out = append(out, token{tSym, s[i:j]})
			i = j
		}
	}
	return out
}

// expr is a parsed expression node.
type expr struct {
	op   string  // "sym", "!", "&&", "||", or a comparison
	sym  string  // "sym": the symbol or constant
	l, r *expr   // "!": l; comparisons: l and r, both "sym"
	args []*expr // "&&", "||": every operand of the chain, two or more
}

// maxExprDepth bounds the nesting of parentheses and "!" the parser follows.
// Real Kconfig files nest a handful of levels; a hostile tree could nest a
// million, and recursion that deep overflows the stack.
const maxExprDepth = 100

type exprParser struct {
	toks  []token
	pos   int
	depth int // open parentheses and "!" around the current token
}

// parseExpr parses s; malformed input yields a best-effort tree, never a panic.
// Whatever s holds, the tree is at most maxExprDepth levels of parentheses and
// "!" deep, and a chain of || or && is one node, so walking the tree recursively
// is safe.
func parseExpr(s string) *expr {
	p := &exprParser{toks: tokenize(s)}
	return p.or()
}

func (p *exprParser) peek() (token, bool) {
	if p.pos >= len(p.toks) {
		return token{}, false
	}
	return p.toks[p.pos], true
}

func (p *exprParser) or() *expr  { return p.chain(tOr, "||", p.and) }
func (p *exprParser) and() *expr { return p.chain(tAnd, "&&", p.unary) }

// chain parses "operand {op operand}" into one node holding every operand.
func (p *exprParser) chain(kind tokKind, op string, operand func() *expr) *expr {
	e := operand()
	if t, ok := p.peek(); !ok || t.kind != kind {
		return e
	}
	n := &expr{op: op, args: []*expr{e}}
	for t, ok := p.peek(); ok && t.kind == kind; t, ok = p.peek() {
		p.pos++
		n.args = append(n.args, operand())
	}
	return n
}

func (p *exprParser) unary() *expr {
	for {
		t, ok := p.peek()
		if !ok {
			return &expr{op: "sym", sym: "y"}
		}
		switch t.kind {
		case tNot, tLParen:
			if p.depth >= maxExprDepth {
				p.pos = len(p.toks) // too deep to be real: ignore the rest
				return &expr{op: "sym", sym: "y"}
			}
			p.pos++
			p.depth++
			var e *expr
			if t.kind == tNot {
				e = &expr{op: "!", l: p.unary()}
			} else {
				e = p.or()
				if t, ok := p.peek(); ok && t.kind == tRParen {
					p.pos++
				}
			}
			p.depth--
			return e
		case tSym:
			p.pos++
			e := &expr{op: "sym", sym: t.text}
			if c, ok := p.peek(); ok && c.kind == tCmp {
				p.pos++
				r := &expr{op: "sym", sym: "n"}
				if t, ok := p.peek(); ok && t.kind == tSym {
					p.pos++
					r.sym = t.text
				}
				e = &expr{op: c.text, l: e, r: r}
			}
			return e
		}
		p.pos++ // skip a stray token
	}
}

// isConst reports whether a symbol token is a constant rather than a symbol.
func isConst(s string) bool {
	switch {
	case s == "y" || s == "m" || s == "n":
		return true
	case s == "" || s[0] == '"' || s[0] == '\'' || s[0] == '$':
		return true
	}
	return isDecimal(s) || strings.HasPrefix(s, "0x") && isHex(s)
}

// env gives symbol values from a final config and types from Kconfig.
type env struct {
	final *Config
	kc    *Kconfig
}

func (v env) typ(sym string) string {
	if v.kc == nil {
		return ""
	}
	if s, ok := v.kc.syms[sym]; ok {
		return s.Type
	}
	return ""
}

// str returns a symbol's value as a string, quotes removed; absent bool and
// tristate symbols are "n", absent others "".
func (v env) str(sym string) string {
	if isConst(sym) {
		return unquote(sym)
	}
	if val, ok := v.final.Value(sym); ok {
		return unquote(val)
	}
	switch v.typ(sym) {
	case "string", "int", "hex":
		return ""
	}
	return "n"
}

// tri returns a symbol's tristate value: 0 (n), 1 (m) or 2 (y).
func (v env) tri(sym string) int {
	if strings.HasPrefix(sym, "$(") {
		return 2 // a macro we cannot run: assume it holds
	}
	switch v.str(sym) {
	case "y":
		return 2
	case "m":
		return 1
	}
	return 0
}

func (v env) eval(e *expr) int {
	switch e.op {
	case "sym":
		return v.tri(e.sym)
	case "!":
		return 2 - v.eval(e.l)
	case "&&":
		r := 2
		for _, a := range e.args {
			r = min(r, v.eval(a))
		}
		return r
	case "||":
		r := 0
		for _, a := range e.args {
			r = max(r, v.eval(a))
		}
		return r
	}
	a, b := v.str(e.l.sym), v.str(e.r.sym)
	cmp := strings.Compare(a, b)
	if x, err := strconv.ParseInt(a, 0, 64); err == nil {
		if y, err := strconv.ParseInt(b, 0, 64); err == nil {
			cmp = 0
			if x < y {
				cmp = -1
			} else if x > y {
				cmp = 1
			}
		}
	}
	var ok bool
	switch e.op {
	case "=":
		ok = cmp == 0
	case "!=":
		ok = cmp != 0
	case "<":
		ok = cmp < 0
	case "<=":
		ok = cmp <= 0
	case ">":
		ok = cmp > 0
	case ">=":
		ok = cmp >= 0
	}
	if ok {
		return 2
	}
	return 0
}

// annotate renders s with each symbol's value, as menuconfig does:
// "RUST_IS_AVAILABLE [=n] && !MODVERSIONS [=y]".
func (v env) annotate(s string) string {
	var b strings.Builder
	toks := tokenize(s)
	for i, t := range toks {
		if i > 0 && t.kind != tRParen && toks[i-1].kind != tNot && toks[i-1].kind != tLParen {
			b.WriteByte(' ')
		}
		b.WriteString(t.text)
		if t.kind == tSym && !isConst(t.text) {
			b.WriteString(" [=" + v.str(t.text) + "]")
		}
	}
	return b.String()
}
