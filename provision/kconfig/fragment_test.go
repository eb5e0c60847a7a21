package kconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/golden"
)

func TestParseFragment(t *testing.T) {
	tests := []struct {
		name, data, wantErr string
	}{
		{name: "same value twice is fine", data: "CONFIG_A=y\nCONFIG_A=y\n"},
		{name: "n written two ways is fine", data: "CONFIG_A=n\n# CONFIG_A is not set\n"},
		{
			name:    "conflict names both lines",
			data:    "CONFIG_A=y\n# comment\nCONFIG_HZ_1000=y\n# CONFIG_HZ_1000 is not set\n",
			wantErr: "parse config fragment: user.config:4: CONFIG_HZ_1000 is set twice with different values: CONFIG_HZ_1000=y at line 3 and # CONFIG_HZ_1000 is not set at line 4; keep one",
		},
		{name: "syntax error names fragment and line", data: "CONFIG_A=y\nCONFIG_B=on\n", wantErr: `user.config:2: cannot parse "CONFIG_B=on"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseFragment("user.config", []byte(tt.data))
			if tt.wantErr == "" {
				if err != nil || f.Name != "user.config" {
					t.Fatalf("ParseFragment = %+v, %v", f, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v\nwant it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestResolveFragment(t *testing.T) {
	base := t.TempDir()
	if err := os.MkdirAll(filepath.Join(base, "frags"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(base, "frags", "mine.config"), []byte("CONFIG_LOG_BUF_SHIFT=17\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(base, "frags", "mine.config")
	tree := "testdata/tree"
	tests := []struct {
		spec     string
		wantName string
		wantSyms string // "SYM=val" joined by space
		wantErr  []string
	}{
		{spec: "CONFIG_RUST=y", wantName: "inline CONFIG_RUST=y", wantSyms: "RUST=y"},
		{spec: "# CONFIG_MODVERSIONS is not set", wantName: "inline # CONFIG_MODVERSIONS is not set", wantSyms: "MODVERSIONS=n"},
		{spec: "CONFIG_RUST=y\n# CONFIG_MODVERSIONS is not set\n", wantName: "inline CONFIG_RUST=y ...", wantSyms: "RUST=y MODVERSIONS=n"},
		{spec: "kvm_guest.config", wantName: "kernel/configs/kvm_guest.config"},
		{spec: "rust", wantName: "kernel/configs/rust.config", wantSyms: "RUST=y"},
		{spec: "tiny.config", wantName: "arch/x86/configs/tiny.config", wantSyms: "NOHIGHMEM=y UNWINDER_GUESS=y"},
		{spec: "frags/mine.config", wantName: "frags/mine.config", wantSyms: "LOG_BUF_SHIFT=17"},
		{spec: abs, wantName: abs, wantSyms: "LOG_BUF_SHIFT=17"},
		{spec: "CONFIG_RUST=yes", wantErr: []string{`inline CONFIG_RUST=yes:1: cannot parse "CONFIG_RUST=yes"`}},
		{spec: "  ", wantErr: []string{"empty config fragment"}},
		{
			spec: "kvm_gust.config",
			wantErr: []string{
				`config fragment "kvm_gust.config" not found; looked in: ` + filepath.Join(base, "kvm_gust.config"),
				filepath.Join(tree, "kernel/configs/kvm_gust.config"),
				filepath.Join(tree, "arch/x86/configs/kvm_gust.config"),
				"hint:",
			},
		},
		{spec: "frags/missing.config", wantErr: []string{"looked in: " + filepath.Join(base, "frags/missing.config") + ". hint:"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			f, err := ResolveFragment(tt.spec, tree, base)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error, got fragment %q", f.Name)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q\ndoes not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Name != tt.wantName {
				t.Errorf("Name = %q, want %q", f.Name, tt.wantName)
			}
			if tt.wantSyms != "" {
				var got []string
				for _, s := range f.Config.Symbols() {
					v, _ := f.Config.Value(s)
					got = append(got, s+"="+v)
				}
				if g := strings.Join(got, " "); g != tt.wantSyms {
					t.Errorf("symbols = %q, want %q", g, tt.wantSyms)
				}
			}
		})
	}
}

// TestMerge reads testdata/merge/<case>/<layer>/*.config (layers and
// fragments in name order) and compares the merged config, each line with
// the fragment that won, or the error, with <case>/want.golden.
func TestMerge(t *testing.T) {
	cases, err := os.ReadDir("testdata/merge")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		if !c.IsDir() {
			continue
		}
		t.Run(c.Name(), func(t *testing.T) {
			dir := filepath.Join("testdata/merge", c.Name())
			layerDirs, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var layers []Layer
			for _, ld := range layerDirs {
				if !ld.IsDir() {
					continue
				}
				files, err := filepath.Glob(filepath.Join(dir, ld.Name(), "*.config"))
				if err != nil {
					t.Fatal(err)
				}
				l := Layer{Name: ld.Name()}
				for _, p := range files {
					data, err := os.ReadFile(p)
					if err != nil {
						t.Fatal(err)
					}
					f, err := ParseFragment(ld.Name()+"/"+filepath.Base(p), data)
					if err != nil {
						t.Fatal(err)
					}
					l.Fragments = append(l.Fragments, f)
				}
				layers = append(layers, l)
			}
			var out strings.Builder
			merged, err := Merge(layers...)
			if err != nil {
				fmt.Fprintf(&out, "error:\n%v\n", err)
			} else {
				for _, s := range merged.Symbols() {
					v, _ := merged.Value(s)
					fmt.Fprintf(&out, "%-40s # from %s\n", formatAssign(s, v), merged.Origin(s))
				}
			}
			golden.Check(t, filepath.Join(dir, "want.golden"), []byte(out.String()))
		})
	}
}

func TestMergeInlineAndCode(t *testing.T) {
	code := New()
	code.Set("RUST", "y") // no origin: named after its fragment
	inline, err := ResolveFragment("# CONFIG_RUST is not set", "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Merge(Layer{Name: "user", Fragments: []Fragment{{Name: "built-in rust", Config: code}, inline}})
	want := `CONFIG_RUST: built-in rust says y but inline # CONFIG_RUST is not set:1 says n`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v\nwant it to contain %q", err, want)
	}
	merged, err := Merge(Layer{Name: "a", Fragments: []Fragment{{Name: "built-in rust", Config: code}}}, Layer{Name: "b", Fragments: []Fragment{inline}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := merged.Value("RUST"); v != "n" {
		t.Errorf("later layer did not win: RUST = %q", v)
	}
	if o := merged.Origin("RUST"); o != "inline # CONFIG_RUST is not set:1" {
		t.Errorf("Origin = %q", o)
	}
}
