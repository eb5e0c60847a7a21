package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/provision/kconfig"
)

// Bindings (kmodvm.yaml kernel.bindings) are headers added to the kernel crate's bindgen
// input for a variant: `#include <HEADER>` lines appended to bindings_helper.h, through the
// patch journal, so the tree is restored after the build like after patches. bindgen then
// generates Rust items for what the headers declare, and after the build each header is
// checked to have at least one of its functions or structs in bindings_generated.rs.

const (
	bindingsHelper    = "rust/bindings/bindings_helper.h"
	bindingsGenerated = "rust/bindings/bindings_generated.rs"
)

// includeDirs are where the kernel's x86 build finds an `#include <...>`.
var includeDirs = []string{"include", "arch/x86/include", "include/uapi", "arch/x86/include/uapi"}

// findHeader returns the header's path in tree relative to it, or "".
func findHeader(tree, header string) string {
	for _, d := range includeDirs {
		rel := filepath.Join(d, header)
		if fi, err := os.Stat(filepath.Join(tree, rel)); err == nil && fi.Mode().IsRegular() {
			return rel
		}
	}
	return ""
}

// addBindings appends the headers to bindings_helper.h, after checking the kernel has each
// (generated/ headers exist only once the build has made them).
func addBindings(j *journal, headers []string) error {
	if len(headers) == 0 {
		return nil
	}
	helper := filepath.Join(j.tree, bindingsHelper)
	data, err := os.ReadFile(helper)
	if errors.Is(err, fs.ErrNotExist) {
		return configError(fmt.Errorf("kernel.bindings: this kernel source has no %s, so it has no Rust bindings to add headers to; hint: use a kernel with Rust support (6.1 or later) in kernel.source, or remove kernel.bindings", bindingsHelper))
	}
	if err != nil {
		return err
	}
	var missing []string
	for _, h := range headers {
		if !strings.HasPrefix(h, "generated/") && findHeader(j.tree, h) == "" {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		return configError(fmt.Errorf("kernel.bindings: this kernel source has no %s (looked in %s); hint: check the spelling against the kernel tree (an #include <linux/foo.h> names include/linux/foo.h), or add the header with kernel.patches",
			strings.Join(missing, ", "), strings.Join(includeDirs, "/, ")+"/"))
	}
	if err := j.save(bindingsHelper); err != nil {
		return err
	}
	var add strings.Builder
	if len(data) > 0 && !strings.HasSuffix(string(data), "\n") {
		add.WriteString("\n")
	}
	add.WriteString("\n/* kmodvm.yaml kernel.bindings */\n")
	for _, h := range headers {
		add.WriteString("#include <" + h + ">\n")
	}
	fi, err := os.Stat(helper)
	if err != nil {
		return err
	}
	return os.WriteFile(helper, append(data, add.String()...), fi.Mode().Perm())
}

// cItem is a function or struct a header declares, with the CONFIG_ symbols of the #if
// blocks around it.
type cItem struct {
	Kind    string // "fn", "struct" or "union": bindgen's Rust item for it
	Name    string
	Configs []string
}

var (
	blockComment = regexp.MustCompile(`(?s)/\*.*?\*/`)
	lineComment  = regexp.MustCompile(`//[^\n]*`)
	configSym    = regexp.MustCompile(`\bCONFIG_([A-Za-z0-9_]+)`)
	aggregate    = regexp.MustCompile(`\b(struct|union)\s+([A-Za-z_]\w*)\s*$`)
	funcDecl     = regexp.MustCompile(`^([A-Za-z_][\w\s*]*?[\s*])([A-Za-z_]\w*)\s*\(`)
	ppDirective  = regexp.MustCompile(`^#\s*(\w+)`)
)

// scanHeader lists what a header declares that bindgen binds: non-static function
// declarations and struct and union definitions at file scope. It is a simple scan, not a C
// parser: a declaration that starts with a macro call (`__printf(1, 2) void f(...)`) is not
// seen, static inline functions and macros are left out (bindgen does not bind them).
func scanHeader(data []byte) []cItem {
	text := blockComment.ReplaceAllStringFunc(string(data), func(c string) string {
		return strings.Repeat("\n", strings.Count(c, "\n")) // keep directives on their own lines
	})
	text = lineComment.ReplaceAllString(text, "")
	text = strings.ReplaceAll(text, "\\\n", " ")
	var items []cItem
	var conds [][]string // CONFIG_ symbols of each open #if; none in an #else branch
	depth := 0
	var stmt strings.Builder
	classify := func(s string, brace bool) {
		s = strings.TrimSpace(s)
		var it cItem
		if brace {
			m := aggregate.FindStringSubmatch(s)
			if m == nil {
				return
			}
			it = cItem{Kind: m[1], Name: m[2]}
		} else {
			if strings.Contains(s, "typedef") || strings.Contains(s, "=") || regexp.MustCompile(`\bstatic\b`).MatchString(s) {
				return
			}
			m := funcDecl.FindStringSubmatch(s)
			if m == nil {
				return
			}
			it = cItem{Kind: "fn", Name: m[2]}
		}
		for _, c := range conds {
			it.Configs = append(it.Configs, c...)
		}
		items = append(items, it)
	}
	for _, line := range strings.Split(text, "\n") {
		if m := ppDirective.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			switch m[1] {
			case "if", "ifdef", "ifndef":
				var syms []string
				for _, s := range configSym.FindAllStringSubmatch(line, -1) {
					syms = append(syms, s[1])
				}
				conds = append(conds, syms)
			case "elif", "else":
				if len(conds) > 0 {
					conds[len(conds)-1] = nil
				}
			case "endif":
				if len(conds) > 0 {
					conds = conds[:len(conds)-1]
				}
			}
			continue
		}
		for _, c := range line + "\n" {
			switch c {
			case '{':
				if depth == 0 {
					classify(stmt.String(), true)
					stmt.Reset()
				}
				depth++
			case '}':
				depth = max(depth-1, 0)
			case ';':
				if depth == 0 {
					classify(stmt.String(), false)
					stmt.Reset()
				}
			default:
				if depth == 0 {
					stmt.WriteRune(c)
				}
			}
		}
	}
	return items
}

// generated reports whether bindgen's output has the Rust item for it.
func generated(rs string, it cItem) bool {
	return regexp.MustCompile(`\bpub ` + it.Kind + ` ` + regexp.QuoteMeta(it.Name) + `\b`).MatchString(rs)
}

// checkBindings checks, after the build, that each of the headers got at least one of its
// functions or structs into bindings_generated.rs, and says for each one that did not why
// it likely did not: it returns one paragraph per such header.
func checkBindings(tree string, headers []string, final *kconfig.Config) ([]string, error) {
	if len(headers) == 0 {
		return nil, nil
	}
	out, err := os.ReadFile(filepath.Join(tree, bindingsGenerated))
	if err != nil {
		return nil, fmt.Errorf("read the generated Rust bindings: %w", err)
	}
	rs := string(out)
	var warnings []string
	for _, h := range headers {
		rel := findHeader(tree, h)
		if rel == "" {
			continue // a generated/ header: nothing to scan
		}
		data, err := os.ReadFile(filepath.Join(tree, rel))
		if err != nil {
			return nil, err
		}
		items := scanHeader(data)
		if slices.ContainsFunc(items, func(it cItem) bool { return generated(rs, it) }) {
			continue
		}
		warnings = append(warnings, bindingWarning(tree, h, rel, items, final))
	}
	return warnings, nil
}

// bindingWarning explains why none of a header's items reached the bindings.
func bindingWarning(tree, h, rel string, items []cItem, final *kconfig.Config) string {
	head := fmt.Sprintf("kernel.bindings: none of what %s declares reached %s", h, bindingsGenerated)
	if len(items) == 0 {
		return head + ": it declares no function or struct that bindgen binds (static inline functions and macros are not bound); hint: include the header that declares what you need, or add a helper in rust/helpers/ with kernel.patches"
	}
	var names []string
	for _, it := range items[:min(len(items), 3)] {
		if it.Kind == "fn" {
			names = append(names, it.Name+"()")
		} else {
			names = append(names, it.Kind+" "+it.Name)
		}
	}
	if len(items) > 3 {
		names = append(names, "...")
	}
	count := fmt.Sprintf("%d items", len(items))
	if len(items) == 1 {
		count = "1 item"
	}
	head += fmt.Sprintf(" (%s: %s)", count, strings.Join(names, ", "))
	off := func(sym string) bool {
		v, _ := final.Value(sym)
		return v != "y" && v != "m"
	}
	var guards []string
	for _, it := range items {
		for _, c := range it.Configs {
			if off(c) && !slices.Contains(guards, c) {
				guards = append(guards, c)
			}
		}
	}
	if len(guards) > 0 {
		return fmt.Sprintf("%s: %s declares them under #if on CONFIG_%s, off in this kernel's config; hint: add CONFIG_%s=y to kernel.fragments",
			head, rel, strings.Join(guards, ", CONFIG_"), guards[0])
	}
	if sym, mk, dir := bindindex.SubsystemConfig(tree, h); sym != "" && off(sym) {
		return fmt.Sprintf("%s: likely because CONFIG_%s, which builds %s (%s), is off in this kernel's config; hint: add CONFIG_%s=y to kernel.fragments",
			head, sym, dir, mk, sym)
	}
	return fmt.Sprintf("%s: kmodvm could not tell why (no #if on an option that is off around them); hint: look for them in %s and at the #if blocks of %s",
		head, filepath.Join(tree, bindingsGenerated), filepath.Join(tree, rel))
}
