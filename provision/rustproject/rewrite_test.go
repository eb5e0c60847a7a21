package rustproject

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/golden"
)

// generated.json is what Linux 7.2's `make rust-analyzer` wrote for examples/rust-hello in
// the toolchain root (the kernel crates' cfg lists cut to a few, CONFIG_MODPROBE_PATH kept:
// a cfg that looks like a path and is none).

// hostLayout makes, under a temporary directory, the host files the rewritten
// generated.json names, and returns where they are.
func hostLayout(t *testing.T) Places {
	t.Helper()
	tmp := t.TempDir()
	pl := Places{
		RootDir: filepath.Join(tmp, "root"), KDir: filepath.Join(tmp, "entry/kdir"), RustSrc: filepath.Join(tmp, "entry/rust-src"),
		Sysroot: filepath.Join(tmp, "cache/ide/sysroot"), Module: filepath.Join(tmp, "rust-hello"),
	}
	files := []string{
		filepath.Join(pl.RootDir, "usr/lib/rustlib/src/rust/library/core/src/lib.rs"),
		filepath.Join(pl.Sysroot, "bin/rustc"),
		filepath.Join(pl.Module, "rust_hello.rs"),
	}
	for _, f := range []string{"compiler_builtins.rs", "proc-macro2/lib.rs", "quote/lib.rs", "syn/lib.rs", "macros/lib.rs",
		"zerocopy-derive/lib.rs", "build_error.rs", "pin-init/internal/src/lib.rs", "pin-init/src/lib.rs", "ffi.rs",
		"zerocopy/src/lib.rs", "bindings/lib.rs", "uapi/lib.rs", "kernel/lib.rs"} {
		files = append(files, filepath.Join(pl.RustSrc, "rust", f))
	}
	for _, f := range []string{"rustdoc_test_builder.rs", "generate_rust_target.rs", "rustdoc_test_gen.rs"} {
		files = append(files, filepath.Join(pl.RustSrc, "scripts", f))
	}
	for _, f := range []string{"libmacros.so", "libzerocopy_derive.so", "libpin_init_internal.so"} {
		files = append(files, filepath.Join(pl.KDir, "rust", f))
	}
	for _, f := range files {
		writeTestFile(t, f, "x")
	}
	return pl
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The generator's output, rewritten for the host: the golden file has the temporary
// directory as $TMP.
func TestRewriteGolden(t *testing.T) {
	raw := readTestFile(t, "testdata/generated.json")
	pl := hostLayout(t)
	p, err := Rewrite([]byte(raw), pl)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Dir(pl.RootDir)
	golden.Check(t, "testdata/rewritten.json", bytes.ReplaceAll(p.Data, []byte(tmp), []byte("$TMP")))
	if !slices.Equal(p.Modules, []string{"rust_hello"}) || p.Crates != 18 {
		t.Errorf("module crates %q, %d crates; want [rust_hello] of 18 (22 less core, alloc, std, proc_macro)", p.Modules, p.Crates)
	}
	if p.Sysroot != pl.Sysroot || p.SysrootSrc != filepath.Join(pl.RootDir, "usr/lib/rustlib/src/rust/library") {
		t.Errorf("sysroot %s, sysroot_src %s", p.Sysroot, p.SysrootSrc)
	}
}

// A kernel whose generator names only the sysroot's sources (sysroot_src, older kernels)
// and gives the module's crate root as an absolute path of its mount point.
func TestRewriteSysrootSrcAndAbsoluteModulePath(t *testing.T) {
	raw := readTestFile(t, "testdata/generated.json")
	raw = strings.Replace(raw, `"sysroot": "/usr"`, `"sysroot_src": "/usr/lib/rustlib/src/rust/library"`, 1)
	raw = strings.Replace(raw, `"root_module": "rust_hello.rs"`, `"root_module": "/usr/src/kmodvm/module/rust_hello.rs"`, 1)
	pl := hostLayout(t)
	p, err := Rewrite([]byte(raw), pl)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(p.Data), `"root_module": "`+filepath.Join(pl.Module, "rust_hello.rs")+`"`) || p.Crates != 18 {
		t.Errorf("module crate root not mapped to %s, or sysroot crates kept (%d crates):\n%s", pl.Module, p.Crates, p.Data)
	}
}

func TestRewriteErrors(t *testing.T) {
	generated := readTestFile(t, "testdata/generated.json")
	for _, tc := range []struct {
		name   string
		edit   func(raw string) string
		layout func(pl Places)
		want   []string
	}{
		{name: "not JSON", edit: func(string) string { return "make: *** No rule" }, want: []string{"read the rust-project.json"}},
		{name: "no crates", edit: func(string) string { return `{"sysroot": "/usr"}` }, want: []string{"no list of crates"}},
		{name: "no sysroot", edit: func(raw string) string { return strings.Replace(raw, `"sysroot": "/usr"`, `"x": "/usr"`, 1) },
			want: []string{"names no sysroot"}},
		{name: "a dependency on no crate", edit: func(raw string) string {
			return strings.Replace(raw, `"crate": 17,`, `"crate": 99,`, 1)
		}, want: []string{"rust_hello", "names no crate"}},
		{name: "the entry lacks a crate root", layout: func(pl Places) {
			os.Remove(filepath.Join(pl.RustSrc, "rust/kernel/lib.rs"))
		}, want: []string{"do not exist", "rust-src/rust/kernel/lib.rs", "hint: "}},
		{name: "the entry lacks a proc-macro library", layout: func(pl Places) {
			os.Remove(filepath.Join(pl.KDir, "rust/libmacros.so"))
		}, want: []string{"do not exist", "kdir/rust/libmacros.so"}},
		{name: "a path in a field kmodvm does not know", edit: func(raw string) string {
			return strings.Replace(raw, `"sysroot": "/usr"`, `"sysroot": "/usr", "build": {"build_file": "/usr/src/kmodvm/linux/BUILD"}`, 1)
		}, want: []string{"fields kmodvm ide does not map", "/usr/src/kmodvm/linux/BUILD"}},
		{name: "no crate of the module", edit: func(raw string) string {
			return strings.Replace(raw, `"root_module": "rust_hello.rs"`, `"root_module": "/usr/src/kmodvm/linux/scripts/rustdoc_test_gen.rs"`, 1)
		}, want: []string{"has no Rust crate", "obj-m := NAME.o", "hint: "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := generated
			if tc.edit != nil {
				raw = tc.edit(raw)
			}
			pl := hostLayout(t)
			if tc.layout != nil {
				tc.layout(pl)
			}
			p, err := Rewrite([]byte(raw), pl)
			if err == nil {
				t.Fatalf("Rewrite succeeded:\n%s", p.Data)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
		})
	}
}

// Dropping crates renumbers the others' dependencies and drops those on the dropped.
func TestDropCratesRenumbers(t *testing.T) {
	crates, err := crateList(mustDecode(t, `{"crates": [
		{"display_name": "core", "deps": []},
		{"display_name": "a", "deps": [{"crate": 0, "name": "core"}]},
		{"display_name": "std", "deps": [{"crate": 0, "name": "core"}]},
		{"display_name": "b", "deps": [{"crate": 2, "name": "std"}, {"crate": 1, "name": "a"}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := dropCrates(crates, func(c map[string]any) bool {
		return str(c, "display_name") == "core" || str(c, "display_name") == "std"
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range kept {
		var deps []string
		for _, d := range c["deps"].([]any) {
			dep := d.(map[string]any)
			deps = append(deps, fmt.Sprintf("%s=%v", str(dep, "name"), dep["crate"]))
		}
		got = append(got, str(c, "display_name")+"["+strings.Join(deps, ",")+"]")
	}
	if want := []string{"a[]", "b[a=0]"}; !slices.Equal(got, want) {
		t.Errorf("kept %q, want %q", got, want)
	}
}

func mustDecode(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}
