package builddiag

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// TestHints reads testdata/hints/<case>.out, a module build's output as rustc prints it,
// maps its paths as a run does (the staged tree testdata/kdir, the kept sources
// ../../testdata/kernel-src), and compares the output and the hints with <case>.golden.
func TestHints(t *testing.T) {
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(td, "kdir")
	src, err := filepath.Abs("../../testdata/kernel-src")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, out, kdir string
	}{
		{"configfs-snippet", "configfs-snippet", kdir},               // rustc showed the #[cfg] line
		{"guest-relative", "guest-relative", kdir},                   // no snippet: the host file is read
		{"guest-absolute", "guest-absolute", kdir},                   // two notes on one item: one hint
		{"old-format", "old-format", kdir},                           // "note: the item is gated here"
		{"auxiliary", "auxiliary", kdir},                             // an option without a prompt
		{"gpu-buddy", "gpu-buddy", kdir},                             // CONFIG_X = "y"
		{"pin-init-feature", "pin-init-feature", kdir},               // not a kernel option: no hint
		{"nowhere", "nowhere", kdir},                                 // the file exists nowhere: no hint
		{"no-config", "configfs-snippet", filepath.Join(td, "none")}, // the kernel's config unreadable
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/hints", c.out+".out"))
			if err != nil {
				t.Fatal(err)
			}
			m := ktrace.Mapper{GuestKernelDir: "/usr/src/kmodvm/linux", KernelSrc: c.kdir, KernelExtra: []string{src}}
			out := m.MapText(string(data))
			hints := Hints(out, m, c.kdir)
			js, err := json.MarshalIndent(hints, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			got.WriteString("== output, paths mapped\n" + out)
			for _, h := range hints {
				got.WriteString("== hint\n" + h.Text + "\n")
			}
			got.WriteString("== json\n" + string(js) + "\n")
			golden.Check(t, filepath.Join("testdata/hints", c.name+".golden"), []byte(strings.NewReplacer(td, "TESTDATA", src, "KERNEL-SRC").Replace(got.String())))
		})
	}
}

func TestParsePred(t *testing.T) {
	tests := []struct{ in, want string }{
		{"CONFIG_X", "CONFIG_X"},
		{`CONFIG_DRM = "y"`, `CONFIG_DRM = "y"`},
		{"not(CONFIG_X)", "not(CONFIG_X)"},
		{"all(CONFIG_BUG, not(CONFIG_UML), not(CONFIG_LOONGARCH),)", "all(CONFIG_BUG, not(CONFIG_UML), not(CONFIG_LOONGARCH))"},
		{`any(feature = "std", feature = "alloc")`, `any(feature = "std", feature = "alloc")`},
		{"not(all())", "not(all())"},
		{`CONFIG_S = "a \"q\" b"`, `CONFIG_S = "a \"q\" b"`},
		{"", "error"},
		{"not(A, B)", "error"},
		{"all(A", "error"},
		{"A B", "error"},
		{"A = B", "error"},
		{`A = "open`, "error"},
		{"1A", "error"},
		{strings.Repeat("not(", 40) + "A" + strings.Repeat(")", 40), "error"},
	}
	for _, tt := range tests {
		e, err := parsePred(tt.in)
		got := "error"
		if err == nil {
			got = e.String()
		}
		if got != tt.want {
			t.Errorf("parsePred(%q) = %q (%v), want %q", tt.in, got, err, tt.want)
		}
	}
}

// need finds the settings that make a predicate hold, against a config.
func TestNeed(t *testing.T) {
	config := map[string]string{"CONFIG_Y": "y", "CONFIG_M": "m", "CONFIG_S": `"abc"`, "CONFIG_H": "0x10", "CONFIG_OFF": "n"}
	val := func(sym string) (string, bool) { v, ok := config[sym]; return v, ok }
	tests := []struct {
		pred string
		val  values
		want string // "holds", "none" (no one can tell), or the needs: "SYM=want(value) ..."
	}{
		{"CONFIG_Y", val, "holds"},
		{"CONFIG_M", val, "holds"},
		{"CONFIG_OFF", val, "CONFIG_OFF=y(n)"},
		{"CONFIG_UNSET", val, "CONFIG_UNSET=y(n)"},
		{`CONFIG_M = "y"`, val, "CONFIG_M=y(m)"},
		{`CONFIG_Y = "y"`, val, "holds"},
		{`CONFIG_S = "abc"`, val, "holds"},
		{`CONFIG_S = "x"`, val, `CONFIG_S=x("abc")`},
		{`CONFIG_H = "0x10"`, val, "holds"},
		{"not(CONFIG_Y)", val, "CONFIG_Y=n(y)"},
		{"not(CONFIG_OFF)", val, "holds"},
		{`not(CONFIG_M = "m")`, val, "CONFIG_M=n(m)"},
		{"all(CONFIG_Y, CONFIG_OFF, CONFIG_UNSET)", val, "CONFIG_OFF=y(n) CONFIG_UNSET=y(n)"},
		{"all(CONFIG_OFF, CONFIG_OFF)", val, "CONFIG_OFF=y(n)"},
		{"any(CONFIG_OFF, CONFIG_Y)", val, "holds"},
		{"any(CONFIG_OFF, CONFIG_UNSET)", val, "CONFIG_OFF=y(n)"},
		{"any(all(CONFIG_OFF, CONFIG_UNSET), CONFIG_A)", val, "CONFIG_A=y(n)"},
		{"not(any(CONFIG_Y, CONFIG_OFF))", val, "CONFIG_Y=n(y)"},
		{"not(all(CONFIG_Y, CONFIG_M))", val, "CONFIG_Y=n(y)"},
		{"MODULE", val, "none"},
		{`feature = "std"`, val, "none"},
		{"all(MODULE, CONFIG_OFF)", val, "CONFIG_OFF=y(n)"},
		{"any(testlib, not(CONFIG_Y))", val, "CONFIG_Y=n(y)"},
		{"CONFIG_Y", nil, "CONFIG_Y=y()"}, // config unknown: the option is named
	}
	for _, tt := range tests {
		e, err := parsePred(tt.pred)
		if err != nil {
			t.Fatal(err)
		}
		o := need(e, false, tt.val)
		got := "none"
		if o.holds {
			got = "holds"
		}
		var parts []string
		for _, s := range o.needs {
			parts = append(parts, s.Symbol+"="+s.Want+"("+s.Value+")")
		}
		if len(parts) > 0 {
			got = strings.Join(parts, " ")
		}
		if got != tt.want {
			t.Errorf("need(%s) = %s, want %s", tt.pred, got, tt.want)
		}
	}
}

// cfgsAt finds an item's #[cfg] attributes from the line rustc names: the item's name or
// one of its attributes.
func TestCfgsAt(t *testing.T) {
	lib := "../../testdata/kernel-src/rust/kernel/lib.rs"
	dir := t.TempDir()
	oneLine := filepath.Join(dir, "one.rs")
	if err := os.WriteFile(oneLine, []byte("/// Docs.\n#[cfg(CONFIG_A)]\n/// More docs.\n#[cfg(not(CONFIG_B))] #[doc(hidden)] pub fn f() {}\n#[cfg(CONFIG_C)]\npub fn g() {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file string
		line int
		want string
	}{
		{lib, 56, "CONFIG_CONFIGFS_FS"}, // the item's name
		{lib, 55, "CONFIG_CONFIGFS_FS"}, // its attribute
		{lib, 57, ""},                   // pub mod cpu: no cfg
		{lib, 35, "not(CONFIG_RUST)"},
		{lib, 9999, ""},
		{oneLine, 4, "CONFIG_A|not(CONFIG_B)"},
		{oneLine, 2, "CONFIG_A|not(CONFIG_B)"},
		{oneLine, 6, "CONFIG_C"},
		{filepath.Join(dir, "missing.rs"), 1, ""},
		{"", 1, ""},
	}
	for _, tt := range tests {
		if got := strings.Join(cfgsAt(tt.file, tt.line), "|"); got != tt.want {
			t.Errorf("cfgsAt(%s, %d) = %q, want %q", tt.file, tt.line, got, tt.want)
		}
	}
}

func TestCfgAttrs(t *testing.T) {
	tests := []struct{ in, want string }{
		{"#[cfg(CONFIG_X)]", "CONFIG_X"},
		{`    #[cfg(any(CONFIG_A, CONFIG_B = "y"))] pub fn x() {}`, `any(CONFIG_A, CONFIG_B = "y")`},
		{`#[cfg(CONFIG_S = "a)b")]`, `CONFIG_S = "a)b"`},
		{"#[cfg(CONFIG_A)] #[cfg(CONFIG_B)]", "CONFIG_A|CONFIG_B"},
		{"#[cfg(all(", ""},
		{"#[cfg_attr(CONFIG_A, x)]", ""},
	}
	for _, tt := range tests {
		if got := strings.Join(cfgAttrs(tt.in), "|"); got != tt.want {
			t.Errorf("cfgAttrs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
