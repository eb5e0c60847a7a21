package kmsg

import (
	"strings"
)

// demangleRust turns a Rust v0 symbol (the kernel builds Rust with
// -Csymbol-mangling-version=v0 and prints symbols mangled) into a readable
// path without generic arguments and crate hashes:
//
//	_RNvXCs5Rd3xvvgW4W_10rust_helloNtB2_9RustHelloNtCsbDqzXfLQacH_6kernel6Module4init
//	  -> <rust_hello::RustHello as kernel::Module>::init
//
// Anything it cannot parse comes back unchanged.
func demangleRust(sym string) string {
	if !strings.HasPrefix(sym, "_R") {
		return sym
	}
	body := sym[2:]
	if i := strings.IndexByte(body, '.'); i >= 0 { // .llvm.123 and similar suffixes
		body = body[:i]
	}
	p := &v0parser{s: body, ok: true}
	// Optional encoding version: a decimal number before the path. Backrefs
	// count from the start of body, so skip it rather than cut it.
	for p.pos < len(body) && body[p.pos] >= '0' && body[p.pos] <= '9' {
		p.pos++
	}
	p.path()
	if !p.ok || p.out.Len() == 0 {
		return sym
	}
	return p.out.String()
}

type v0parser struct {
	s     string
	pos   int
	out   strings.Builder
	ok    bool
	depth int
	quiet int // >0 while parsing parts that are not printed (generic args)
}

const (
	v0MaxDepth = 64
	v0MaxOut   = 512
)

func (p *v0parser) fail() { p.ok = false; p.pos = len(p.s) }

func (p *v0parser) print(s string) {
	if p.quiet == 0 {
		p.out.WriteString(s)
		if p.out.Len() > v0MaxOut {
			p.fail()
		}
	}
}

func (p *v0parser) peek() byte {
	if p.pos < len(p.s) {
		return p.s[p.pos]
	}
	return 0
}

func (p *v0parser) next() byte {
	c := p.peek()
	if c == 0 {
		p.fail()
		return 0
	}
	p.pos++
	return c
}

func (p *v0parser) eat(c byte) bool {
	if p.peek() == c {
		p.pos++
		return true
	}
	return false
}

func (p *v0parser) enter() bool {
	p.depth++
	if p.depth > v0MaxDepth {
		p.fail()
	}
	return p.depth <= v0MaxDepth && p.pos <= len(p.s)
}

func (p *v0parser) leave() { p.depth-- }

// base62 parses {0-9a-zA-Z} "_"; "_" alone is 0, otherwise value+1.
func (p *v0parser) base62() (uint64, bool) {
	if p.eat('_') {
		return 0, true
	}
	var v uint64
	for {
		c := p.next()
		var d uint64
		switch {
		case c == '_':
			return v + 1, true
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case c >= 'a' && c <= 'z':
			d = uint64(c-'a') + 10
		case c >= 'A' && c <= 'Z':
			d = uint64(c-'A') + 36
		default:
			p.fail()
			return 0, false
		}
		if v > (1 << 58) {
			p.fail()
			return 0, false
		}
		v = v*62 + d
	}
}

func (p *v0parser) decimal() (int, bool) {
	start := p.pos
	for p.pos < len(p.s) && p.s[p.pos] >= '0' && p.s[p.pos] <= '9' {
		p.pos++
	}
	if p.pos == start || p.pos-start > 6 || (p.s[start] == '0' && p.pos-start > 1) {
		p.fail()
		return 0, false
	}
	n := 0
	for _, c := range p.s[start:p.pos] {
		n = n*10 + int(c-'0')
	}
	return n, true
}

func (p *v0parser) disambiguator() {
	if p.eat('s') {
		p.base62()
	}
}

// ident parses [disambiguator] ["u"] decimal ["_"] bytes.
func (p *v0parser) ident() string {
	p.disambiguator()
	p.eat('u') // punycode: shown as is
	n, ok := p.decimal()
	if !ok {
		return ""
	}
	p.eat('_')
	if p.pos+n > len(p.s) {
		p.fail()
		return ""
	}
	id := p.s[p.pos : p.pos+n]
	p.pos += n
	return id
}

// backref runs f at the position a "B" backref points to.
func (p *v0parser) backref(f func()) {
	start := p.pos - 1
	off, ok := p.base62()
	if !ok || off >= uint64(start) {
		p.fail()
		return
	}
	saved := p.pos
	p.pos = int(off)
	f()
	if p.ok {
		p.pos = saved
	}
}

func (p *v0parser) path() {
	if !p.enter() {
		return
	}
	defer p.leave()
	switch c := p.next(); c {
	case 'C':
		p.print(p.ident())
	case 'N':
		ns := p.next()
		p.path()
		id := p.ident()
		switch {
		case ns >= 'a' && ns <= 'z':
			if id != "" {
				p.print("::" + id)
			}
		case ns == 'C':
			p.print("::{closure}")
		case ns == 'S':
			p.print("::{shim}")
		default:
			p.print("::{" + string(ns) + "}")
		}
	case 'M': // inherent impl: <Type>
		p.implPath()
		p.print("<")
		p.typ()
		p.print(">")
	case 'X': // trait impl: <Type as Trait>
		p.implPath()
		p.traitOf()
	case 'Y': // trait definition: <Type as Trait>
		p.traitOf()
	case 'I':
		p.path()
		p.quiet++
		for p.ok && !p.eat('E') {
			p.genericArg()
		}
		p.quiet--
	case 'B':
		p.backref(p.path)
	default:
		p.fail()
	}
}

// implPath skips an impl's disambiguator and its path, which are not printed.
func (p *v0parser) implPath() {
	p.disambiguator()
	p.quiet++
	p.path()
	p.quiet--
}

// traitOf prints "<Type as Trait>".
func (p *v0parser) traitOf() {
	p.print("<")
	p.typ()
	p.print(" as ")
	p.path()
	p.print(">")
}

func (p *v0parser) genericArg() {
	switch {
	case p.eat('L'):
		p.base62()
	case p.eat('K'):
		p.constant()
	default:
		p.typ()
	}
}

func (p *v0parser) constant() {
	if !p.enter() {
		return
	}
	defer p.leave()
	switch {
	case p.eat('p'):
	case p.eat('B'):
		p.backref(p.constant)
	default:
		c := p.peek()
		if c < 'a' || c > 'z' || c == 'p' || c == 'e' || c == 'u' || c == 'z' {
			p.fail() // str, tuple, array and other const encodings: give up
			return
		}
		p.pos++
		p.eat('n')
		for p.ok && !p.eat('_') {
			c := p.next()
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				p.fail()
			}
		}
	}
}

var v0BasicTypes = map[byte]string{
	'a': "i8", 'b': "bool", 'c': "char", 'd': "f64", 'e': "str", 'f': "f32", 'h': "u8",
	'i': "isize", 'j': "usize", 'l': "i32", 'm': "u32", 'n': "i128", 'o': "u128",
	's': "i16", 't': "u16", 'u': "()", 'v': "...", 'x': "i64", 'y': "u64", 'z': "!", 'p': "_",
}

func (p *v0parser) typ() {
	if !p.enter() {
		return
	}
	defer p.leave()
	c := p.peek()
	if name, ok := v0BasicTypes[c]; ok {
		p.pos++
		p.print(name)
		return
	}
	switch c {
	case 'A':
		p.pos++
		p.print("[")
		p.typ()
		p.print("; _]")
		p.quiet++
		p.constant()
		p.quiet--
	case 'S':
		p.pos++
		p.print("[")
		p.typ()
		p.print("]")
	case 'T':
		p.pos++
		p.print("(")
		for i := 0; p.ok && !p.eat('E'); i++ {
			if i > 0 {
				p.print(", ")
			}
			p.typ()
		}
		p.print(")")
	case 'R', 'Q':
		p.pos++
		if c == 'R' {
			p.print("&")
		} else {
			p.print("&mut ")
		}
		if p.eat('L') {
			p.base62()
		}
		p.typ()
	case 'P', 'O':
		p.pos++
		if c == 'P' {
			p.print("*const ")
		} else {
			p.print("*mut ")
		}
		p.typ()
	case 'B':
		p.pos++
		p.backref(p.typ)
	case 'F', 'D':
		p.fail() // fn pointers and trait objects: rare in kernel symbols
	default:
		p.path()
	}
}
