package bindindex

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
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
	Included    bool
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

// ConfigLines are the kmodvm.yaml lines that bind the name ("" when adding a header would
// not).
func (m *Missing) ConfigLines() string {
	if !m.Bindable() {
		return ""
	}
	return "kernel:\n  bindings: [" + m.Header + "]\n"
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
	if lines := m.ConfigLines(); lines != "" {
		fmt.Fprintf(&b, "To bind it, add its header to kmodvm.yaml (then `kmodvm kernel build` regenerates the bindings):\n\n%s", lines)
	}
	if note := m.Note(); note != "" {
		if m.ConfigLines() != "" {
			b.WriteString("\n")
		}
		b.WriteString(note + "\n")
	}
	return b.String()
}
