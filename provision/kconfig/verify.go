package kconfig

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Problem is one requested option that did not come out as asked.
type Problem struct {
	Symbol string `json:"symbol"` // without CONFIG_
	Want   string `json:"want"`
	Got    string `json:"got"` // "" when the final config does not have the symbol
	// Origin is where the request came from ("user.config:3"), if known.
	Origin string `json:"origin,omitempty"`
	// Reason says why, for humans: "unknown symbol (did you mean RUST_DEBUG?)",
	// "only defined for arch/arm64", "depends on: RUST_IS_AVAILABLE [=n] && ...".
	Reason string `json:"reason"`
	// Fixes are assignments that would satisfy an unmet dependency; any one of
	// them is enough for that dependency.
	Fixes []string `json:"fixes,omitempty"`
}

// Report is the outcome of Verify or Check.
type Report struct {
	Problems []Problem
	// Step names what produced the final config in Err's text; empty means
	// "make olddefconfig".
	Step string
	// check is set by Check: there is no final config yet.
	check bool
}

// Verify checks that every symbol of requested has the requested value in
// final; requesting "n" is satisfied by "n" or by absence. kc, if not nil,
// explains each failure from the tree's Kconfig files; otherwise reasons are
// generic.
func Verify(requested, final *Config, kc *Kconfig) Report {
	var r Report
	for _, e := range requested.entries {
		got, _ := final.Value(e.sym)
		if satisfied(e.val, got) {
			continue
		}
		p := Problem{Symbol: e.sym, Want: e.val, Got: got, Origin: requested.Origin(e.sym)}
		p.Reason, p.Fixes = explain(e.sym, e.val, got, requested, final, kc)
		r.Problems = append(r.Problems, p)
	}
	return r
}

// Check finds requests that cannot work before any Kconfig run: unknown
// symbols, symbols of another architecture, "m" for a bool, and values of the
// wrong kind (y for an int, a number for a bool).
func Check(requested *Config, kc *Kconfig) Report {
	r := Report{check: true}
	if kc == nil {
		return r
	}
	for _, e := range requested.entries {
		p := Problem{Symbol: e.sym, Want: e.val, Origin: requested.Origin(e.sym)}
		if reason, ok := missing(e.sym, kc); ok {
			p.Reason = reason
			r.Problems = append(r.Problems, p)
			continue
		}
		typ := kc.syms[e.sym].Type
		tristate := e.val == "y" || e.val == "m" || e.val == "n"
		switch {
		case typ == "bool" && e.val == "m":
			p.Reason = "is a bool: it can be y or n, not m"
		case (typ == "bool" || typ == "tristate") && !tristate:
			p.Reason = fmt.Sprintf("is a %s: its value must be y, m or n", typ)
		case (typ == "int" || typ == "hex") && e.val != "n" && !isDecimal(e.val) && !isHex(e.val):
			p.Reason = fmt.Sprintf("is an %s: its value must be a number", typ)
		case typ == "string" && e.val != "n" && !strings.HasPrefix(e.val, `"`):
			p.Reason = `is a string: quote its value, e.g. "..."`
		default:
			continue
		}
		r.Problems = append(r.Problems, p)
	}
	return r
}

func satisfied(want, got string) bool {
	if want == "n" {
		return got == "" || got == "n"
	}
	return want == got
}

func level(val string) int {
	switch val {
	case "y":
		return 2
	case "m":
		return 1
	case "n", "":
		return 0
	}
	return 1 // a string or number: the symbol only has to be visible
}

// missing explains a symbol that does not exist for SrcArch.
func missing(sym string, kc *Kconfig) (string, bool) {
	s, ok := kc.syms[sym]
	if !ok {
		reason := "unknown symbol: no Kconfig file in the kernel tree defines it"
		if sug := kc.Suggest(sym); len(sug) > 0 {
			reason += " (did you mean " + strings.Join(sug, ", ") + "?)"
		}
		return reason, true
	}
	if len(applicable(s)) > 0 {
		return "", false
	}
	var arches []string
	for _, d := range s.Defs {
		arches = append(arches, "arch/"+d.Arch)
	}
	slices.Sort(arches)
	arches = slices.Compact(arches)
	return fmt.Sprintf("only defined for %s, not for arch/%s (%s:%d)", strings.Join(arches, ", "), SrcArch, s.Defs[0].File, s.Defs[0].Line), true
}

func applicable(s *Symbol) []Definition {
	var out []Definition
	for _, d := range s.Defs {
		if d.Applies() {
			out = append(out, d)
		}
	}
	return out
}

// explain says why sym came out as got instead of want.
// Fixes that repeat what was already requested are left out.
func explain(sym, want, got string, requested, final *Config, kc *Kconfig) (string, []string) {
	if kc == nil {
		if got == "" || got == "n" {
			return "dropped by Kconfig: an unmet dependency, or no such symbol for this architecture", nil
		}
		return "changed by Kconfig (a select, a default or a range)", nil
	}
	if reason, fixes := blocker(sym, want, got, requested, final, kc); reason != "" {
		return reason, fixes
	}
	defs := applicable(kc.syms[sym])
	return fmt.Sprintf("its dependencies hold, so a default, a select or a choice changed it; see %s:%d, or `make menuconfig` (press / and type %s)", defs[0].File, defs[0].Line, sym), nil
}

// Blocker says what would keep a kernel.fragments line asking for sym=want from taking
// effect, in a kernel whose final config is final: an unknown symbol, unmet dependencies
// (with the assignments that would meet them, as Problem.Fixes), a hidden or missing
// prompt, a select, a range, a choice. "" when nothing would: asking is enough.
func Blocker(sym, want string, final *Config, kc *Kconfig) (reason string, fixes []string) {
	if kc == nil {
		return "", nil
	}
	sym = normSym(sym)
	got, _ := final.Value(sym)
	requested := New()
	requested.Set(sym, want)
	return blocker(sym, want, got, requested, final, kc)
}

// Assignment renders sym=val as a .config or fragment line: "CONFIG_X=y", or
// "# CONFIG_X is not set" for n.
func Assignment(sym, val string) string {
	return formatAssign(normSym(sym), val)
}

// blocker is what Blocker says, for explain too, which has a Kconfig index (kc).
func blocker(sym, want, got string, requested, final *Config, kc *Kconfig) (string, []string) {
	if reason, ok := missing(sym, kc); ok {
		return reason, nil
	}
	s := kc.syms[sym]
	defs := applicable(s)
	v := env{final: final, kc: kc}
	lv := level(want)

	if lv > 0 && level(got) < lv {
		// Unmet dependencies: the symbol is off (or limited to m) because a
		// "depends on" clause is below what was asked for.
		var parts []string
		var fixes []string
		met := false
		for _, d := range defs {
			var failing []string
			for _, c := range d.DependsOn {
				e := parseExpr(c)
				if v.eval(e) >= max(lv, 1) {
					continue
				}
				failing = append(failing, c)
				f := slices.DeleteFunc(v.fixes(e), func(fix string) bool {
					sym, val, _, _ := parseLine(fix)
					r, ok := requested.Value(sym)
					return ok && r == val
				})
				if len(f) > 0 {
					fixes = append(fixes, "`"+strings.Join(f, "` or `")+"`")
				}
			}
			if len(failing) == 0 {
				met = true
				break
			}
			for i, c := range failing {
				failing[i] = v.annotate(c)
				if len(failing) > 1 && strings.Contains(c, "||") {
					failing[i] = "(" + failing[i] + ")"
				}
			}
			part := strings.Join(failing, " && ")
			if len(defs) > 1 {
				part = fmt.Sprintf("%s (%s:%d)", part, d.File, d.Line)
			}
			parts = append(parts, part)
		}
		if !met {
			return "depends on: " + strings.Join(parts, "; or "), slices.Compact(fixes)
		}
	}

	prompted := false
	var hidden []string
	for _, d := range defs {
		if !d.Prompt {
			continue
		}
		if d.PromptIf == "" || v.eval(parseExpr(d.PromptIf)) > 0 {
			prompted = true
			break
		}
		hidden = append(hidden, v.annotate(d.PromptIf))
	}
	on := level(got) > 0

	switch {
	case want == "m" && s.Type == "bool":
		return "is a bool: it can be y or n, not m", nil
	case want == "n" && on || want == "m" && got == "y":
		if by := activeSelectors(s, v); len(by) > 0 {
			return "selected by: " + strings.Join(by, ", "), nil
		}
		if len(hidden) > 0 && !prompted {
			return "its prompt is hidden unless: " + strings.Join(hidden, " || ") + ", so its default applies", nil
		}
		if !prompted {
			return "has no prompt, so a user cannot set it; its default turns it on", nil
		}
	case len(hidden) > 0 && !prompted:
		return "its prompt is hidden unless: " + strings.Join(hidden, " || ") + ", so Kconfig ignores the value asked for", nil
	case !prompted:
		reason := "has no prompt, so a user cannot set it"
		if lv > 0 && !on {
			reason += "; only a select turns it on"
			if len(s.SelectedBy) > 0 {
				reason += ", and none is active: " + selectorList(s, v)
			}
		} else {
			reason += "; Kconfig uses its default"
		}
		return reason, nil
	}
	if r := rangeProblem(want, defs, v); r != "" {
		return r, nil
	}
	for _, d := range defs {
		if d.Choice == "" {
			continue
		}
		picked := "another entry"
		if others := kc.chosen(d.Choice, final); len(others) > 0 {
			picked = strings.Join(others, ", ")
		}
		return fmt.Sprintf("is an entry of the choice at %s and Kconfig picked %s instead: request the entry you want and turn the others off", d.Choice, picked), nil
	}
	return "", nil
}

// chosen lists the entries of the choice at pos that are y in final.
func (k *Kconfig) chosen(pos string, final *Config) []string {
	var out []string
	for _, name := range k.names {
		for _, d := range k.syms[name].Defs {
			if v, _ := final.Value(name); d.Choice == pos && v == "y" {
				out = append(out, name+" [=y]")
				break
			}
		}
	}
	return out
}

// activeSelectors lists the symbols that are on in the final config and
// select s, with their values.
func activeSelectors(s *Symbol, v env) []string {
	var out []string
	for _, sel := range s.SelectedBy {
		if v.tri(sel.By) == 0 || sel.If != "" && v.eval(parseExpr(sel.If)) == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%s [=%s]", sel.By, v.str(sel.By)))
	}
	return slices.Compact(out)
}

// selectorList lists every selector of s with its value, at most eight.
func selectorList(s *Symbol, v env) string {
	var out []string
	for i, sel := range s.SelectedBy {
		if i == 8 {
			out = append(out, fmt.Sprintf("and %d more", len(s.SelectedBy)-8))
			break
		}
		item := fmt.Sprintf("%s [=%s]", sel.By, v.str(sel.By))
		if sel.If != "" {
			item += " if " + v.annotate(sel.If)
		}
		out = append(out, item)
	}
	return strings.Join(out, ", ")
}

// rangeProblem reports a numeric value outside the symbol's active range.
func rangeProblem(want string, defs []Definition, v env) string {
	w, err := strconv.ParseInt(want, 0, 64)
	if err != nil {
		return ""
	}
	for _, d := range defs {
		for _, r := range d.Ranges {
			bounds, cond, _ := cutIf(r)
			if cond != "" && v.eval(parseExpr(cond)) == 0 {
				continue
			}
			f := strings.Fields(bounds)
			if len(f) != 2 {
				continue
			}
			lo, err1 := strconv.ParseInt(v.str(f[0]), 0, 64)
			hi, err2 := strconv.ParseInt(v.str(f[1]), 0, 64)
			if err1 == nil && err2 == nil && (w < lo || w > hi) {
				return fmt.Sprintf("value %s is outside its range %s..%s (%s:%d)", want, v.annotate(f[0]), v.annotate(f[1]), d.File, d.Line)
			}
		}
	}
	return ""
}

// fixes returns assignments of which any one would make e true; only
// symbols a user can set (they have a prompt) are suggested.
func (v env) fixes(e *expr) []string {
	settable := func(sym string) bool {
		if v.kc == nil || isConst(sym) {
			return false
		}
		s, ok := v.kc.syms[sym]
		return ok && slices.ContainsFunc(applicable(s), func(d Definition) bool { return d.Prompt })
	}
	switch e.op {
	case "sym":
		if settable(e.sym) && v.tri(e.sym) < 2 {
			return []string{formatAssign(e.sym, "y")}
		}
	case "!":
		// Turning a symbol off does not help while something selects it.
		if e.l.op == "sym" && settable(e.l.sym) && v.tri(e.l.sym) > 0 && len(activeSelectors(v.kc.syms[e.l.sym], v)) == 0 {
			return []string{formatAssign(e.l.sym, "n")}
		}
	case "||":
		var out []string
		for _, a := range e.args {
			out = append(out, v.fixes(a)...)
		}
		return out
	case "&&":
		// Only when a single operand fails does fixing it make the whole true.
		var failing *expr
		for _, a := range e.args {
			if v.eval(a) == 0 {
				if failing != nil {
					return nil
				}
				failing = a
			}
		}
		if failing != nil {
			return v.fixes(failing)
		}
	}
	return nil
}

// Err returns nil when there are no problems, otherwise one error listing
// every problem on its own line, followed by hints.
func (r Report) Err() error {
	if len(r.Problems) == 0 {
		return nil
	}
	step := r.Step
	if step == "" {
		step = "make olddefconfig"
	}
	var b strings.Builder
	noun := "options"
	if len(r.Problems) == 1 {
		noun = "option"
	}
	if r.check {
		fmt.Fprintf(&b, "kernel config check failed: %d requested %s cannot be set in this kernel tree:", len(r.Problems), noun)
	} else {
		fmt.Fprintf(&b, "kernel config verification failed: %d requested %s did not survive `%s`:", len(r.Problems), noun, step)
	}
	var hints []string
	rust := false
	for _, p := range r.Problems {
		got := p.Got
		if got == "" {
			got = "(unset)"
		}
		if r.check {
			fmt.Fprintf(&b, "\n  %s — %s", formatAssign(p.Symbol, p.Want), p.Reason)
		} else {
			fmt.Fprintf(&b, "\n  %s%s: want %s, got %s — %s", Prefix, p.Symbol, p.Want, got, p.Reason)
		}
		if p.Origin != "" {
			fmt.Fprintf(&b, " (requested in %s)", p.Origin)
		}
		if len(p.Fixes) > 0 {
			hints = append(hints, fmt.Sprintf("hint: to get %s%s, also request %s", Prefix, p.Symbol, strings.Join(p.Fixes, "; and ")))
		}
		if strings.Contains(p.Reason, "RUST_IS_AVAILABLE [=n]") {
			rust = true
		}
	}
	if rust {
		hints = append(hints, "hint: `make LLVM=1 rustavailable` in the kernel tree says why Kconfig finds no usable Rust toolchain")
	}
	hints = append(hints, "hint: fix the fragments named above; in the kernel tree, `make menuconfig` (press / and type the symbol) shows each option's dependencies")
	for _, h := range hints {
		b.WriteString("\n")
		b.WriteString(h)
	}
	return fmt.Errorf("%s", b.String())
}
