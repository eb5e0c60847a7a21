package bindindex

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/kmodvm/kmodvm/provision/kconfig"
)

// Missing is what can be said about a name the bindings lack: where C declares it and how
// to bind it.
type Missing struct {
	Name  string
	Decls []Decl // best first (FindDecls)
	// Header is the header to add to the bindings (kmodvm.yaml's kernel.bindings): the best
	// declaration's; "" when no header declares the name.
	Header string
	// Included: Header is among the headers the kernel's bindings already come from, so
	// adding it changes nothing.
	Included bool
	// Options build what the best declaration declares (its #if guards, the option that
	// builds its subsystem), with their values in this kernel.
	Options     []Option
	Suggestions []string // bound names close to Name
}

// maxDecls is how many declarations a report shows.
const maxDecls = 5

// Explain finds out why name is not bound: its declarations in the headers of the kernel
// tree kdir (the entry's trimmed tree), and bound names close to it.
func (ix *Index) Explain(kdir, name string) (*Missing, error) {
	decls, err := FindDecls(kdir, name)
	if err != nil {
		return nil, err
	}
	m := &Missing{Name: name, Decls: decls}
	if len(decls) > maxDecls {
		m.Decls = decls[:maxDecls]
	}
	if len(decls) > 0 {
		m.Header = decls[0].Header
		m.Included = slices.Contains(HelperIncludes(kdir), m.Header)
		m.Options = buildingOptions(kdir, decls[0])
	} else {
		m.Suggestions = ix.Suggest(name, 3)
	}
	return m, nil
}

// Bindable says whether adding Header would bind the name: a declaration was found, it is
// one bindgen binds, and its header is not bound already.
func (m *Missing) Bindable() bool {
	return len(m.Decls) > 0 && m.Decls[0].Bindable() && !m.Included
}

// ConfigLines are the kmodvm.yaml lines that bind the name: its header when the bindings
// do not include it yet, and the options that build it that are off in this kernel; ""
// when no such lines would bind it (bindgen binds no static inline function or
// function-like macro, and a header already bound with every option on says nothing).
func (m *Missing) ConfigLines() string {
	if len(m.Decls) == 0 || !m.Decls[0].Bindable() {
		return ""
	}
	var b strings.Builder
	if !m.Included {
		b.WriteString("  bindings: [" + m.Header + "]\n")
	}
	if off := m.offOptions(); len(off) > 0 {
		b.WriteString("  fragments: [\"CONFIG_" + strings.Join(off, "=y\", \"CONFIG_") + "=y\"]\n")
	}
	if b.Len() == 0 {
		return ""
	}
	return "kernel:\n" + b.String()
}

// offOptions are the symbols of the options that build the name and are off.
func (m *Missing) offOptions() []string {
	var off []string
	for _, o := range m.Options {
		if !o.On() {
			off = append(off, o.Symbol)
		}
	}
	return off
}

// Note says why adding a header would not bind the name, or what to know when it would;
// "" when there is nothing to add.
func (m *Missing) Note() string {
	if len(m.Decls) == 0 {
		return ""
	}
	d := m.Decls[0]
	switch {
	case d.Kind == "static inline function":
		return fmt.Sprintf("%s is a static inline function: bindgen binds none, whatever header is added. The kernel crate reaches such functions through C wrappers (rust_helper_%s in rust/helpers/*.c, a kernel patch); an out-of-tree module can call the exported functions it is built on, or ship its own C wrapper.", m.Name, m.Name)
	case d.Kind == "function-like macro":
		return fmt.Sprintf("%s is a function-like macro: bindgen binds none, whatever header is added. Call what it expands to (see the declaration), or wrap it in C as the kernel does in rust/helpers/*.c.", m.Name)
	case m.Included && len(m.offOptions()) > 0:
		return fmt.Sprintf("%s is already among the headers the kernel's bindings come from (rust/bindings/bindings_helper.h): the declaration is compiled out because CONFIG_%s is off in this kernel.", m.Header, strings.Join(m.offOptions(), ", CONFIG_"))
	case m.Included:
		return fmt.Sprintf("%s is already among the headers the kernel's bindings come from (rust/bindings/bindings_helper.h): this declaration is compiled out by the kernel's config (#ifdef), hidden behind a macro, or blocklisted (rust/bindgen_parameters).", m.Header)
	case d.Kind == "macro":
		return fmt.Sprintf("bindgen binds a macro only when it expands to a plain number or string; for an expression (a cast, an OR of flags) the kernel declares `const TYPE RUST_CONST_HELPER_%s = %s;` in rust/bindings/bindings_helper.h.", m.Name, m.Name)
	}
	return ""
}

// Text is the report for a person: the declarations (host paths under kdir), then what to
// add to kmodvm.yaml or why adding a header would not help. release names the kernel.
func (m *Missing) Text(kdir, release string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is not bound in kernel %s: no item of that name in its bindings, helpers or uapi crates.\n", m.Name, release)
	if len(m.Decls) == 0 {
		fmt.Fprintf(&b, "No header of this kernel declares it (searched %s under %s; drivers' private headers are not kept).\n",
			strings.Join(HeaderDirs, "/ and ")+"/", kdir)
		if len(m.Suggestions) > 0 {
			fmt.Fprintf(&b, "Bound names close to it: %s\n", strings.Join(m.Suggestions, ", "))
		}
		fmt.Fprintf(&b, "hint: `kmodvm bindings --regex '%s'` lists the bound names a pattern matches\n", m.Name)
		return b.String()
	}
	b.WriteString("C declaration:\n")
	for _, d := range m.Decls {
		fmt.Fprintf(&b, "  %s:%d (%s)\n    %s\n", filepath.Join(kdir, filepath.FromSlash(d.File)), d.Line, d.Kind, d.Text)
	}
	if len(m.Options) > 0 {
		b.WriteString("Built under:\n")
		for _, o := range m.Options {
			why := o.Why
			if why == "#if" {
				why = "#if around the declaration"
			}
			val := "not set"
			if o.Value != "" {
				val = "=" + o.Value
			}
			fmt.Fprintf(&b, "  CONFIG_%s (%s): %s in this kernel\n", o.Symbol, why, val)
		}
	}
	if lines := m.ConfigLines(); lines != "" {
		fmt.Fprintf(&b, "To bind it, add to kmodvm.yaml (then `kmodvm kernel build` rebuilds the kernel with its bindings):\n\n%s", lines)
	}
	if note := m.Note(); note != "" {
		if m.ConfigLines() != "" {
			b.WriteString("\n")
		}
		b.WriteString(note + "\n")
	}
	return b.String()
}

// Option is a kernel config option that builds what declares a name that is not bound.
type Option struct {
	Symbol string `json:"symbol"` // without CONFIG_
	// Why: "#if" (the declaration is in an #if block on it) or the Makefile line that
	// builds the header's subsystem under it, e.g. "drivers/Makefile builds drivers/iio/".
	Why string `json:"why"`
	// Value is the option's value in the kernel's config: "y", "m", a number; "" when it
	// is not set.
	Value string `json:"value"`
}

// On says whether the option builds its code into this kernel (built in or as a module).
func (o Option) On() bool { return o.Value == "y" || o.Value == "m" }

// buildingOptions are the options that build what d declares: the guards of its #if
// blocks, then the option that builds the header's subsystem, with their values in
// kdir's .config.
func buildingOptions(kdir string, d Decl) []Option {
	cfg := map[string]string{}
	if f, err := os.Open(filepath.Join(kdir, ".config")); err == nil {
		if c, err := kconfig.Parse(f); err == nil {
			for _, sym := range c.Symbols() {
				if v, _ := c.Value(sym); v != "n" { // "# CONFIG_X is not set"
					cfg[sym] = v
				}
			}
		}
		f.Close()
	}
	var out []Option
	for _, g := range d.Guards {
		out = append(out, Option{Symbol: g, Why: "#if", Value: cfg[g]})
	}
	if sym, mk, dir := SubsystemConfig(kdir, d.Header); sym != "" && !slices.ContainsFunc(out, func(o Option) bool { return o.Symbol == sym }) {
		out = append(out, Option{Symbol: sym, Why: mk + " builds " + dir, Value: cfg[sym]})
	}
	return out
}

// subsystemMakefiles are where a subsystem's directory is added to the build under its option.
var subsystemMakefiles = []string{"drivers/Makefile", "fs/Makefile", "net/Makefile", "sound/Makefile", "lib/Makefile", "kernel/Makefile", "mm/Makefile", "block/Makefile", "crypto/Makefile", "security/Makefile", "Kbuild", "Makefile"}

// SubsystemConfig guesses the option that builds the code a header belongs to, from its
// directory: linux/iio/iio.h and linux/iio.h belong to iio/, which drivers/Makefile builds
// under `obj-$(CONFIG_IIO) += iio/`. It returns the option (without CONFIG_), the Makefile
// and the directory; "" when no Makefile of tree says.
func SubsystemConfig(tree, header string) (sym, makefile, dir string) {
	name := strings.TrimPrefix(header, "linux/")
	if i := strings.Index(name, "/"); i >= 0 {
		name = name[:i]
	} else {
		name = strings.TrimSuffix(name, ".h")
	}
	re := regexp.MustCompile(`(?m)^obj-\$\(CONFIG_([A-Za-z0-9_]+)\)\s*[+:]?=.*[\s=]` + regexp.QuoteMeta(name) + `/`)
	for _, mk := range subsystemMakefiles {
		data, err := os.ReadFile(filepath.Join(tree, mk))
		if err != nil {
			continue
		}
		if m := re.FindSubmatch(data); m != nil {
			return string(m[1]), mk, filepath.Join(filepath.Dir(mk), name) + "/"
		}
	}
	return "", "", ""
}
