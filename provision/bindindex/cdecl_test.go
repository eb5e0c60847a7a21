package bindindex

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/golden"
)

// TestFindDecls: the best declaration of each name, and how C includes its header.
func TestFindDecls(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		line       int
		kind       string
		header     string
	}{
		{"iio_dev", "include/linux/iio/iio.h", 18, "struct", "linux/iio/iio.h"},
		{"iio_device_register", "include/linux/iio/iio.h", 35, "function-like macro", "linux/iio/iio.h"},
		{"__iio_device_register", "include/linux/iio/iio.h", 37, "function", "linux/iio/iio.h"},
		{"iio_priv", "include/linux/iio/iio.h", 40, "static inline function", "linux/iio/iio.h"},
		{"iio_find_channel_from_si", "include/linux/iio/iio.h", 30, "function", "linux/iio/iio.h"},
		{"kmalloc_array_noprof", "include/linux/slab.h", 14, "static inline function", "linux/slab.h"},
		{"list_add", "include/linux/list.h", 5, "static inline function", "linux/list.h"},
		{"iio_event_data", "include/uapi/linux/iio_events.h", 8, "struct", "linux/iio_events.h"},
		{"IIO_EV_TYPE_MAG", "include/uapi/linux/iio_events.h", 15, "enumerator", "linux/iio_events.h"},
		{"IIO_EV_TYPE_ROC", "include/uapi/linux/iio_events.h", 16, "enumerator", "linux/iio_events.h"},
		{"IIO_GET_EVENT_FD_IOCTL", "include/uapi/linux/iio_events.h", 19, "macro", "linux/iio_events.h"},
		{"msr_t", "arch/x86/include/asm/msr.h", 5, "typedef", "asm/msr.h"},
		{"msr_count", "arch/x86/include/asm/msr.h", 6, "variable", "asm/msr.h"},
	} {
		decls, err := FindDecls(fixtureTree, tc.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(decls) == 0 {
			t.Errorf("%s: no declaration found", tc.name)
			continue
		}
		d := decls[0]
		if d.File != tc.file || d.Line != tc.line || d.Kind != tc.kind || d.Header != tc.header {
			t.Errorf("%s: %s:%d %s %s; want %s:%d %s %s", tc.name, d.File, d.Line, d.Kind, d.Header, tc.file, tc.line, tc.kind, tc.header)
		}
	}
	// Comments and calls are no declarations.
	for _, name := range []string{"__list_add", "kmalloc_noprof", "THIS_MODULE", "nosuch_thing"} {
		if decls, _ := FindDecls(fixtureTree, name); len(decls) != 0 {
			t.Errorf("%s: found %+v; want nothing", name, decls)
		}
	}
}

// TestMissingText: what a person reads when a name is not bound, per case (golden).
func TestMissingText(t *testing.T) {
	ix, err := Load(stageFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		bindable bool // adding the header binds it
		lines    bool // kmodvm.yaml lines bind it
	}{
		{"iio_dev", true, true},                // a struct in a header not bound yet
		{"iio_device_register", false, false},  // a function-like macro
		{"iio_priv", false, false},             // a static inline function
		{"kmalloc_tiny", false, true},          // its header is bound already: compiled out, the option that builds it is off
		{"IIO_GET_EVENT_FD_IOCTL", true, true}, // a macro: bound if it is a plain value
		{"refcount_incr", false, false},        // a typo: no declaration, bound names close to it
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ix.Explain(fixtureTree, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if m.Bindable() != tc.bindable || (m.ConfigLines() != "") != tc.lines {
				t.Errorf("Bindable() = %v, ConfigLines() = %q; want bindable %v, lines %v", m.Bindable(), m.ConfigLines(), tc.bindable, tc.lines)
			}
			text := m.Text("/KDIR", "7.2.13-kmodvm-1e61f939")
			golden.Check(t, filepath.Join("testdata", "missing", tc.name+".txt"), []byte(text))
		})
	}
	m, _ := ix.Explain(fixtureTree, "iio_dev")
	if want := "kernel:\n  bindings: [linux/iio/iio.h]\n  fragments: [\"CONFIG_IIO=y\"]\n"; m.ConfigLines() != want {
		t.Errorf("ConfigLines() = %q; want %q", m.ConfigLines(), want)
	}
	m, _ = ix.Explain(fixtureTree, "refcount_incr")
	if !strings.Contains(strings.Join(m.Suggestions, " "), "refcount_inc") {
		t.Errorf("Suggestions for refcount_incr = %v; want refcount_inc among them", m.Suggestions)
	}
}

// A declaration's guards are the CONFIG_ symbols of the #if blocks it is in: not an
// #else branch's, not a negated test's, one of an ||; nested blocks add up.
func TestDeclGuards(t *testing.T) {
	tests := []struct {
		name, header string
		want         []string
	}{
		{"none", "int f(void);\n", nil},
		{"include guard only", "#ifndef _F_H\n#define _F_H\nint f(void);\n#endif\n", nil},
		{"ifdef", "#ifdef CONFIG_A\nint f(void);\n#endif\n", []string{"A"}},
		{"IS_ENABLED", "#if IS_ENABLED(CONFIG_A)\nint f(void);\n#endif\n", []string{"A"}},
		{"else branch", "#ifdef CONFIG_A\nint g(void);\n#else\nint f(void);\n#endif\n", nil},
		{"negated", "#if !defined(CONFIG_A)\nint f(void);\n#endif\n", nil},
		{"either", "#if defined(CONFIG_A) || defined(CONFIG_B)\nint f(void);\n#endif\n", []string{"A"}},
		{"both", "#if defined(CONFIG_A) && defined(CONFIG_B)\nint f(void);\n#endif\n", []string{"A", "B"}},
		{"nested", "#ifdef CONFIG_A\n# ifdef CONFIG_B\nint f(void);\n# endif\n#endif\n", []string{"A", "B"}},
		{"after a block", "#ifdef CONFIG_A\nint g(void);\n#endif\nint f(void);\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := t.TempDir()
			if err := os.MkdirAll(filepath.Join(tree, "include/linux"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tree, "include/linux/f.h"), []byte(tt.header), 0o644); err != nil {
				t.Fatal(err)
			}
			decls, err := FindDecls(tree, "f")
			if err != nil || len(decls) != 1 {
				t.Fatalf("FindDecls: %v, %v", decls, err)
			}
			if !slices.Equal(decls[0].Guards, tt.want) {
				t.Errorf("guards %v, want %v", decls[0].Guards, tt.want)
			}
		})
	}
}

// The options that build a declaration: its guards, then its subsystem's, with their values
// in the kernel's .config; the lines to add set those that are off.
func TestBuildingOptions(t *testing.T) {
	d := Decl{File: "include/linux/iio/iio.h", Header: "linux/iio/iio.h", Kind: "function", Guards: []string{"IIO_BUFFER"}}
	got := buildingOptions(fixtureTree, d)
	want := []Option{{Symbol: "IIO_BUFFER", Why: "#if"}, {Symbol: "IIO", Why: "drivers/Makefile builds drivers/iio/"}}
	if !slices.Equal(got, want) {
		t.Errorf("options %+v, want %+v", got, want)
	}
	d = Decl{File: "include/linux/gpio/driver.h", Header: "linux/gpio/driver.h", Kind: "function"}
	got = buildingOptions(fixtureTree, d)
	if want := []Option{{Symbol: "GPIOLIB", Why: "drivers/Makefile builds drivers/gpio/", Value: "y"}}; !slices.Equal(got, want) {
		t.Errorf("options %+v, want %+v", got, want)
	}
	m := &Missing{Name: "gpiod_get", Decls: []Decl{d}, Header: d.Header, Options: got}
	if lines := m.ConfigLines(); lines != "kernel:\n  bindings: [linux/gpio/driver.h]\n" {
		t.Errorf("ConfigLines() = %q: an option that is on needs no fragment", lines)
	}
}
