package kconfig

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func loadFake(t *testing.T) *Kconfig {
	t.Helper()
	k, err := LoadKconfig("testdata/tree")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadKconfig(t *testing.T) {
	k := loadFake(t)
	tests := []struct {
		sym      string
		file     string
		line     int
		typ      string
		arch     string
		deps     []string
		prompt   bool
		promptIf string
		choice   string
		ranges   []string
	}{
		{sym: "RUST", file: "init/Kconfig", line: 55, typ: "bool", prompt: true, deps: []string{
			"HAVE_RUST", "RUST_IS_AVAILABLE", "!MODVERSIONS || GENDWARFKSYMS", "!GCC_PLUGIN_RANDSTRUCT", "!RANDSTRUCT",
			"!DEBUG_INFO_BTF || (PAHOLE_HAS_LANG_EXCLUDE && !LTO)", "!KASAN_SW_TAGS || RUSTC_VERSION >= 109600"}},
		{sym: "CONFIG_RUST_IS_AVAILABLE", file: "init/Kconfig", line: 9, typ: "bool"},
		// "if MODULES" around the source line, then "if MODVERSIONS", the
		// choice's own "depends on" (deduplicated) and the entry's lines.
		{sym: "GENDWARFKSYMS", file: "kernel/module/Kconfig", line: 19, typ: "bool", prompt: true, choice: "kernel/module/Kconfig:10",
			deps: []string{"MODULES", "MODVERSIONS", "DEBUG_INFO", "!DEBUG_INFO_REDUCED && !DEBUG_INFO_SPLIT", "!LTO"}},
		{sym: "MODVERSIONS", file: "kernel/module/Kconfig", line: 2, typ: "bool", prompt: true, deps: []string{"MODULES", "!COMPILE_TEST"}},
		// A continued line, joined with single spaces.
		{sym: "HZ_1000", file: "kernel/Kconfig.hz", line: 12, typ: "bool", prompt: true, choice: "kernel/Kconfig.hz:2", deps: []string{"!EXPERT || PRINTK || COMPILE_TEST"}},
		{sym: "HZ", file: "kernel/Kconfig.hz", line: 19, typ: "int"},
		{sym: "LOG_BUF_SHIFT", file: "init/Kconfig", line: 18, typ: "int", prompt: true, deps: []string{"PRINTK"}, ranges: []string{"12 25"}},
		{sym: "PRINTK", file: "init/Kconfig", line: 14, typ: "bool", prompt: true, promptIf: "EXPERT"},
		{sym: "64BIT", file: "arch/x86/Kconfig", line: 2, typ: "bool", arch: "x86", prompt: true, promptIf: `"$(ARCH)" = "x86"`},
		{sym: "ARM64_PTR_AUTH", file: "arch/arm64/Kconfig", line: 6, typ: "bool", arch: "arm64", prompt: true},
		// The menu's "depends on" applies to its entries.
		{sym: "VIRTIO", file: "drivers/Kconfig", line: 7, typ: "tristate", prompt: true, deps: []string{"HAS_IOMEM"}},
		// "if NETDEVICES" around the source line of drivers/net/ethernet/Kconfig.
		{sym: "E1000", file: "drivers/net/ethernet/Kconfig", line: 2, typ: "tristate", prompt: true, deps: []string{"NETDEVICES", "PCI && HAS_IOPORT"}},
		{sym: "NETDEVICES", file: "drivers/net/Kconfig", line: 2, typ: "bool", prompt: true, deps: []string{"NET"}},
		{sym: "RANDSTRUCT", file: "security/Kconfig.hardening", line: 19, typ: "bool"},
	}
	for _, tt := range tests {
		t.Run(tt.sym, func(t *testing.T) {
			s, ok := k.Lookup(tt.sym)
			if !ok {
				t.Fatalf("Lookup(%q) found nothing", tt.sym)
			}
			if len(s.Defs) != 1 {
				t.Fatalf("%d definitions, want 1: %+v", len(s.Defs), s.Defs)
			}
			d := s.Defs[0]
			if d.File != tt.file || d.Line != tt.line {
				t.Errorf("at %s:%d, want %s:%d", d.File, d.Line, tt.file, tt.line)
			}
			if s.Type != tt.typ || d.Type != tt.typ {
				t.Errorf("type %q/%q, want %q", s.Type, d.Type, tt.typ)
			}
			if d.Arch != tt.arch {
				t.Errorf("arch %q, want %q", d.Arch, tt.arch)
			}
			if !slices.Equal(d.DependsOn, tt.deps) {
				t.Errorf("depends on %q\nwant %q", d.DependsOn, tt.deps)
			}
			if d.Prompt != tt.prompt || d.PromptIf != tt.promptIf {
				t.Errorf("prompt %v if %q, want %v if %q", d.Prompt, d.PromptIf, tt.prompt, tt.promptIf)
			}
			if d.Choice != tt.choice {
				t.Errorf("in choice %q, want %q", d.Choice, tt.choice)
			}
			if !slices.Equal(d.Ranges, tt.ranges) {
				t.Errorf("ranges %q, want %q", d.Ranges, tt.ranges)
			}
		})
	}

	for _, sym := range []string{"FAKE_IN_HELP", "TEST_ONLY_SYMBOL", "DOC_ONLY_SYMBOL"} {
		if _, ok := k.Lookup(sym); ok {
			t.Errorf("%s is indexed but must not be (help text or a skipped directory)", sym)
		}
	}

	selects := []struct {
		sym  string
		want []Select
	}{
		{"HAVE_RUST", []Select{{By: "X86", Target: "HAVE_RUST", If: "X86_64"}}}, // ARM64's select is another arch
		{"MODVERSIONS", []Select{{By: "RANDSTRUCT_FULL", Target: "MODVERSIONS", If: "MODULES"}}},
		{"NET_FAILOVER", []Select{{By: "VIRTIO_NET", Target: "NET_FAILOVER"}}},
	}
	for _, tt := range selects {
		s, _ := k.Lookup(tt.sym)
		if !slices.Equal(s.SelectedBy, tt.want) {
			t.Errorf("%s selected by %+v, want %+v", tt.sym, s.SelectedBy, tt.want)
		}
	}
}

func TestLoadKconfigSkipsGitAndErrors(t *testing.T) {
	dir := t.TempDir()
	for path, data := range map[string]string{
		"Kconfig":      "config REAL\n\tbool \"real\"\n",
		".git/Kconfig": "config IN_GIT\n\tbool\n",
	} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, path), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k, err := LoadKconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Lookup("REAL"); !ok || k.Len() != 1 {
		t.Errorf("want only REAL indexed, got %d symbols", k.Len())
	}

	if _, err := LoadKconfig(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no Kconfig files") {
		t.Errorf("empty tree: error = %v", err)
	}
	if _, err := LoadKconfig(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing tree: no error")
	}
}

func TestSuggest(t *testing.T) {
	k := loadFake(t)
	tests := []struct {
		sym  string
		want []string
	}{
		{"RSUT", []string{"RUST"}},
		{"CONFIG_HZ_1001", []string{"HZ_100", "HZ_1000"}},
		{"modversion", []string{"MODVERSIONS"}},
		{"VIRTIO_NETT", []string{"VIRTIO_NET"}},
		{"COMPLETELY_DIFFERENT", nil},
	}
	for _, tt := range tests {
		if got := k.Suggest(tt.sym); !slices.Equal(got, tt.want) {
			t.Errorf("Suggest(%q) = %q, want %q", tt.sym, got, tt.want)
		}
	}
}

func TestExpr(t *testing.T) {
	final, err := Parse(strings.NewReader("CONFIG_MODVERSIONS=y\nCONFIG_VIRTIO=m\nCONFIG_RUSTC_VERSION=109700\nCONFIG_CMDLINE=\"quiet\"\nCONFIG_HZ=250\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := env{final: final, kc: loadFake(t)}
	tests := []struct {
		expr     string
		want     int
		rendered string
	}{
		{"RUST_IS_AVAILABLE", 0, "RUST_IS_AVAILABLE [=n]"},
		{"!MODVERSIONS || GENDWARFKSYMS", 0, "!MODVERSIONS [=y] || GENDWARFKSYMS [=n]"},
		{"!DEBUG_INFO_BTF || (PAHOLE_HAS_LANG_EXCLUDE && !LTO)", 2, "!DEBUG_INFO_BTF [=n] || (PAHOLE_HAS_LANG_EXCLUDE [=n] && !LTO [=n])"},
		{"VIRTIO", 1, "VIRTIO [=m]"},
		{"VIRTIO && MODVERSIONS", 1, "VIRTIO [=m] && MODVERSIONS [=y]"},
		{"!VIRTIO", 1, "!VIRTIO [=m]"},
		{"VIRTIO || y", 2, "VIRTIO [=m] || y"},
		{"RUSTC_VERSION >= 109600", 2, "RUSTC_VERSION [=109700] >= 109600"},
		{"RUSTC_VERSION < 0x10", 0, "RUSTC_VERSION [=109700] < 0x10"},
		{"HZ != 250", 0, "HZ [=250] != 250"},
		{"VIRTIO = m", 2, "VIRTIO [=m] = m"},
		{`CMDLINE = "quiet"`, 2, `CMDLINE [=quiet] = "quiet"`},
		{"LOG_BUF_SHIFT = 17", 0, "LOG_BUF_SHIFT [=] = 17"}, // an absent int is empty, not n
		{"$(cc-option,-fzero-init)", 2, "$(cc-option,-fzero-init)"},
		// Malformed input must not panic.
		{"(A && ", 0, "(A [=n] &&"},
		{") ||", 2, ") ||"},
		{"A =", 2, "A [=n] ="}, // a missing operand is n
		{"", 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := v.eval(parseExpr(tt.expr)); got != tt.want {
				t.Errorf("eval = %d, want %d", got, tt.want)
			}
			if got := v.annotate(tt.expr); got != tt.rendered {
				t.Errorf("annotate = %q, want %q", got, tt.rendered)
			}
		})
	}
}

// TestRealTree checks LoadKconfig against a full kernel source tree given in
// KMODVM_KERNEL_TREE, e.g. /var/tmp/kconfig-linux/linux-source-7.2.
func TestRealTree(t *testing.T) {
	tree := os.Getenv("KMODVM_KERNEL_TREE")
	if tree == "" {
		t.Skip("set KMODVM_KERNEL_TREE to a kernel source tree to run this test")
	}
	start := time.Now()
	k, err := LoadKconfig(tree)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("LoadKconfig: %d symbols in %v", k.Len(), time.Since(start))
	if k.Len() < 10000 {
		t.Errorf("only %d symbols: the walk missed files", k.Len())
	}
	rust, ok := k.Lookup("RUST")
	if !ok || len(rust.Defs) != 1 || rust.Defs[0].File != "init/Kconfig" {
		t.Fatalf("RUST: %+v", rust)
	}
	for _, want := range []string{"HAVE_RUST", "RUST_IS_AVAILABLE", "!MODVERSIONS || GENDWARFKSYMS", "!RANDSTRUCT"} {
		if !slices.Contains(rust.Defs[0].DependsOn, want) {
			t.Errorf("RUST does not depend on %q: %q", want, rust.Defs[0].DependsOn)
		}
	}
	if s, _ := k.Lookup("ARM64_PTR_AUTH"); len(applicable(k.syms["ARM64_PTR_AUTH"])) != 0 || len(s.Defs) == 0 {
		t.Errorf("ARM64_PTR_AUTH should be arm64-only: %+v", s.Defs)
	}
	// Every in-tree fragment must parse without conflicts; defconfigs must
	// parse (a few assign a symbol twice, which Kconfig allows).
	fragments, _ := filepath.Glob(filepath.Join(tree, "kernel/configs/*.config"))
	more, _ := filepath.Glob(filepath.Join(tree, "arch/*/configs/*.config"))
	fragments = append(fragments, more...)
	for _, f := range fragments {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ParseFragment(f, data); err != nil {
			t.Error(err)
		}
	}
	defconfigs, _ := filepath.Glob(filepath.Join(tree, "arch/*/configs/*_defconfig"))
	for _, f := range defconfigs {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Parse(bytes.NewReader(data)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	t.Logf("parsed %d in-tree fragments and %d defconfigs", len(fragments), len(defconfigs))
}

// exprDepth is how many levels deep e is.
func exprDepth(e *expr) int {
	d := 0
	for _, c := range append([]*expr{e.l, e.r}, e.args...) {
		if c != nil {
			d = max(d, exprDepth(c))
		}
	}
	return d + 1
}

// TestExprHostile feeds the expression parser what no kernel writes but a
// hostile tree could: nesting and chains a hundred thousand deep. The tree
// must stay shallow (a deep one overflows the stack when walked: 20 million
// "(" did) and chains must be one node (evaluating and fixing a chain of
// nested pairs took time quadratic in its length).
func TestExprHostile(t *testing.T) {
	const n = 100_000
	final, err := Parse(strings.NewReader("CONFIG_A=y\nCONFIG_M=m\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := env{final: final}
	tests := []struct {
		name string
		s    string
		want int // eval
		args int // operands of the top node, 0 when it is no chain
	}{
		{"open parentheses", strings.Repeat("(", n) + "A", 2, 0},
		{"closed parentheses", strings.Repeat("(", n) + "B" + strings.Repeat(")", n), 2, 0}, // cut off deep inside: best effort
		{"negations", strings.Repeat("!", n) + "A", 2, 0},
		{"or chain", strings.Repeat("B || ", n) + "A", 2, n + 1},
		{"and chain, failing first", "B" + strings.Repeat(" && A", n), 0, n + 1},
		{"mixed chain", strings.Repeat("A && M || ", n) + "B", 1, n + 1},
		{"stray tokens", strings.Repeat(") ", n) + "A", 2, 0},
		{"unclosed macro", "$(" + strings.Repeat("(", n), 2, 0},
		{"unclosed string", `"` + strings.Repeat(`\"`, n), 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := parseExpr(tt.s)
			if d := exprDepth(e); d > maxExprDepth+2 {
				t.Errorf("tree is %d levels deep, want at most %d", d, maxExprDepth+2)
			}
			if len(e.args) != tt.args {
				t.Errorf("top node has %d operands, want %d", len(e.args), tt.args)
			}
			if got := v.eval(e); got != tt.want {
				t.Errorf("eval = %d, want %d", got, tt.want)
			}
			v.fixes(e)
			v.annotate(tt.s)
		})
	}
}

// TestExprChains checks chains of || and && against the pairwise definition.
func TestExprChains(t *testing.T) {
	final, err := Parse(strings.NewReader("CONFIG_Y=y\nCONFIG_M=m\n"))
	if err != nil {
		t.Fatal(err)
	}
	v := env{final: final}
	vals := map[string]int{"Y": 2, "M": 1, "N": 0}
	for _, a := range []string{"Y", "M", "N"} {
		for _, b := range []string{"Y", "M", "N"} {
			for _, c := range []string{"Y", "M", "N"} {
				x, y, z := vals[a], vals[b], vals[c]
				for s, want := range map[string]int{
					a + " || " + b + " || " + c:         max(x, y, z),
					a + " && " + b + " && " + c:         min(x, y, z),
					a + " && " + b + " || " + c:         max(min(x, y), z),
					a + " || " + b + " && " + c:         max(x, min(y, z)),
					"!(" + a + " || " + b + ") && " + c: min(2-max(x, y), z),
				} {
					if got := v.eval(parseExpr(s)); got != want {
						t.Errorf("eval(%q) = %d, want %d", s, got, want)
					}
				}
			}
		}
	}
}

// FuzzExpr checks that evaluating and annotating any expression never panics,
// that the tree stays shallow, and that parentheses and "!" mean what they
// say.
func FuzzExpr(f *testing.F) {
	f.Add("!DEBUG_INFO_BTF || (PAHOLE_HAS_LANG_EXCLUDE && !LTO)")
	f.Add(`RUSTC_VERSION >= 109600 && CMDLINE != "x\"y" && $(cc-option,-O2)`)
	f.Add("((A || !)B = ")
	final, err := Parse(strings.NewReader("CONFIG_A=y\nCONFIG_B=m\nCONFIG_N=17\n"))
	if err != nil {
		f.Fatal(err)
	}
	v := env{final: final}
	f.Fuzz(func(t *testing.T, s string) {
		e := parseExpr(s)
		if d := exprDepth(e); d > maxExprDepth+2 {
			t.Fatalf("parseExpr(%q) is %d levels deep", s, d)
		}
		r := v.eval(e)
		if r < 0 || r > 2 {
			t.Fatalf("eval(%q) = %d, not a tristate", s, r)
		}
		v.fixes(e)
		v.annotate(s)
		if !balanced(s) || !wrapsCleanly(s) || nesting(s) > maxExprDepth-2 {
			return
		}
		if got := v.eval(parseExpr("(" + s + ")")); got != r {
			t.Fatalf("eval((%s)) = %d, but eval(%s) = %d", s, got, s, r)
		}
		if got := v.eval(parseExpr("!(" + s + ")")); got != 2-r {
			t.Fatalf("eval(!(%s)) = %d, but eval(%s) = %d", s, got, s, r)
		}
	})
}

// nesting is how deep the parser may have to go into s: every "(" and "!".
func nesting(s string) int {
	n := 0
	for _, t := range tokenize(s) {
		if t.kind == tLParen || t.kind == tNot {
			n++
		}
	}
	return n
}

// balanced reports whether the parentheses of s, as the tokenizer sees them,
// pair up.
// wrapsCleanly reports whether s reads as the same tokens inside parentheses: an
// unterminated string or $(macro) at its end would swallow the closing one, and then the
// parentheses say nothing about s.
func wrapsCleanly(s string) bool {
	in, out := tokenize(s), tokenize("("+s+")")
	return len(out) == len(in)+2 && slices.Equal(in, out[1:len(out)-1])
}

func balanced(s string) bool {
	open := 0
	for _, t := range tokenize(s) {
		switch t.kind {
		case tLParen:
			open++
		case tRParen:
			open--
			if open < 0 {
				return false
			}
		}
	}
	return open == 0
}

// TestKconfigHostile checks the Kconfig reader on files no kernel has.
func TestKconfigHostile(t *testing.T) {
	t.Run("continued over many lines", func(t *testing.T) {
		const n = 200_000 // quadratic joining took minutes here
		src := "config A\n\tbool\n\tdepends on " + strings.Repeat("B || \\\n", n) + "C\n"
		f, err := parseKconfig(strings.NewReader(src), "Kconfig")
		if err != nil {
			t.Fatal(err)
		}
		deps := f.defs[0].def.DependsOn
		if len(deps) != 1 || !strings.HasSuffix(deps[0], "B || C") || strings.Count(deps[0], "||") != n {
			t.Errorf("depends on: %d clauses, want one with %d ||", len(deps), n)
		}
	})
	t.Run("nested as deep as allowed", func(t *testing.T) {
		src := strings.Repeat("if A\n", maxBlockDepth) + "config X\n\tbool\n" + strings.Repeat("endif\n", maxBlockDepth)
		f, err := parseKconfig(strings.NewReader(src), "Kconfig")
		if err != nil {
			t.Fatal(err)
		}
		if got := len(f.defs[0].def.DependsOn); got != maxBlockDepth {
			t.Errorf("X depends on %d clauses, want %d", got, maxBlockDepth)
		}
	})
	t.Run("nested deeper", func(t *testing.T) {
		src := "menu \"m\"\n" + strings.Repeat("if A\n", maxBlockDepth) + "config X\n\tbool\n"
		_, err := parseKconfig(strings.NewReader(src), "Kconfig")
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("Kconfig:%d: ", maxBlockDepth+1)) {
			t.Errorf("error = %v, want one naming line %d", err, maxBlockDepth+1)
		}
	})
}

// FuzzParseKconfig checks that reading any Kconfig file never panics and
// that what it finds points into the file.
func FuzzParseKconfig(f *testing.F) {
	paths, err := filepath.Glob("testdata/tree/*/Kconfig*")
	if err != nil {
		f.Fatal(err)
	}
	more, _ := filepath.Glob("testdata/tree/*/*/Kconfig*")
	for _, p := range append(paths, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kf, err := parseKconfig(bytes.NewReader(data), "arch/x86/Kconfig")
		if err != nil {
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, d := range kf.defs {
			if d.def.File != "arch/x86/Kconfig" || d.def.Arch != "x86" || d.def.Line < 1 || d.def.Line > lines {
				t.Fatalf("%s defined at %s:%d (arch %q); the file has %d lines", d.name, d.def.File, d.def.Line, d.def.Arch, lines)
			}
			if len(d.def.DependsOn) > maxBlockDepth+lines {
				t.Fatalf("%s has %d dependency clauses", d.name, len(d.def.DependsOn))
			}
			for _, c := range d.def.DependsOn {
				parseExpr(c)
			}
		}
	})
}
