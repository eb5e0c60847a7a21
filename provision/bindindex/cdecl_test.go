package bindindex

import (
	"path/filepath"
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
		bindable bool
	}{
		{"iio_dev", true},                // a struct in a header not bound yet
		{"iio_device_register", false},   // a function-like macro
		{"iio_priv", false},              // a static inline function
		{"kmalloc_tiny", false},          // its header is bound already: compiled out
		{"IIO_GET_EVENT_FD_IOCTL", true}, // a macro: bound if it is a plain value
		{"refcount_incr", false},         // a typo: no declaration, bound names close to it
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ix.Explain(fixtureTree, tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if m.Bindable() != tc.bindable || (m.ConfigLines() != "") != tc.bindable {
				t.Errorf("Bindable() = %v, ConfigLines() = %q; want bindable %v", m.Bindable(), m.ConfigLines(), tc.bindable)
			}
			text := m.Text("/KDIR", "7.2.13-kmodvm-1e61f939")
			golden.Check(t, filepath.Join("testdata", "missing", tc.name+".txt"), []byte(text))
		})
	}
	m, _ := ix.Explain(fixtureTree, "iio_dev")
	if want := "kernel:\n  bindings: [linux/iio/iio.h]\n"; m.ConfigLines() != want {
		t.Errorf("ConfigLines() = %q; want %q", m.ConfigLines(), want)
	}
	m, _ = ix.Explain(fixtureTree, "refcount_incr")
	if !strings.Contains(strings.Join(m.Suggestions, " "), "refcount_inc") {
		t.Errorf("Suggestions for refcount_incr = %v; want refcount_inc among them", m.Suggestions)
	}
}
