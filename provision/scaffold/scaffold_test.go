package scaffold

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// renderCases are the skeletons the golden files hold.
var renderCases = []struct {
	golden string
	spec   Spec
}{
	{"hello-rust", Spec{Name: "hello", Lang: Rust, Author: "Ada Lovelace <ada@example.org>"}},
	{"my-driver-c", Spec{Name: "my-driver", Lang: C, Author: "Ada Lovelace <ada@example.org>"}},
	{"no-author-rust", Spec{Name: "my_driver2", Lang: Rust}},
	{"no-author-c", Spec{Name: "Probe", Lang: C}},
}

// TestRender: each skeleton's files, byte for byte (go test -update rewrites them).
func TestRender(t *testing.T) {
	for _, tc := range renderCases {
		t.Run(tc.golden, func(t *testing.T) {
			files, err := Render(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, f := range files {
				names = append(names, f.Name)
				golden.Check(t, filepath.Join("testdata", tc.golden, f.Name+".golden"), f.Data)
			}
			if golden.Update() {
				return
			}
			// No golden file is left over from a file the skeleton no longer has.
			entries, err := os.ReadDir(filepath.Join("testdata", tc.golden))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if !slices.Contains(names, strings.TrimSuffix(e.Name(), ".golden")) {
					t.Errorf("testdata/%s/%s is no file of the skeleton (%v)", tc.golden, e.Name(), names)
				}
			}
		})
	}
}

func TestModuleName(t *testing.T) {
	tests := []struct {
		name string
		lang Lang
		want string // "" when refused
		err  string
	}{
		{name: "hello", lang: Rust, want: "hello"},
		{name: "my-driver", lang: C, want: "my_driver"},
		{name: "Probe_2", lang: Rust, want: "Probe_2"},
		{name: "", lang: Rust, err: "needs a name"},
		{name: "2fast", lang: C, err: "does not start with a letter"},
		{name: "_x", lang: C, err: "does not start with a letter"},
		{name: "my.driver", lang: Rust, err: `has '.' in it`},
		{name: "../evil", lang: C, err: "does not start with a letter"},
		{name: "a/b", lang: C, err: `has '/' in it`},
		{name: "héllo", lang: Rust, err: `has 'é' in it`},
		{name: strings.Repeat("a", 56), lang: C, err: "at most 55"},
		{name: strings.Repeat("a", 55), lang: C, want: strings.Repeat("a", 55)},
		{name: "match", lang: Rust, err: "Rust keyword"},
		{name: "match", lang: C, want: "match"},
		{name: "greeting", lang: Rust, err: "type Greeting"},
		{name: "this-module", lang: Rust, err: "type ThisModule"},
		{name: "module", lang: C, err: "module_init"},
	}
	for _, tt := range tests {
		got, err := ModuleName(tt.name, tt.lang)
		if tt.err != "" {
			var ie *InputError
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), "hint:") || !errors.As(err, &ie) {
				t.Errorf("ModuleName(%q, %s) = %q, %v; want an InputError with %q and a hint", tt.name, tt.lang, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ModuleName(%q, %s) = %q, %v; want %q", tt.name, tt.lang, got, err, tt.want)
		}
	}
}

func TestRenderRefuses(t *testing.T) {
	tests := []struct {
		spec Spec
		err  string
	}{
		{Spec{Name: "hello", Lang: "go"}, `--lang "go" is not rust or c`},
		{Spec{Name: "hello", Lang: Rust, Author: `Ann "A" B`}, `without " or \`},
		{Spec{Name: "hello", Lang: C, Author: "José"}, "printable ASCII"},
		{Spec{Name: "1", Lang: C}, "does not start with a letter"},
	}
	for _, tt := range tests {
		if _, err := Render(tt.spec); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("Render(%+v) = %v, want an error with %q", tt.spec, err, tt.err)
		}
	}
}

// rustModuleKeys is the order of module!'s keys that the 7.2 kernel's macro enforces
// (rust/macros/module.rs, ModuleInfo::parse): keys out of this order do not compile.
var rustModuleKeys = []string{"type", "name", "authors", "description", "license", "alias", "firmware", "imports_ns", "params"}

// rustRequiredKeys are the keys it requires.
var rustRequiredKeys = []string{"type", "name", "license"}

// TestRustSourceWellFormed checks what can be checked of the Rust skeleton without a kernel:
// module!'s keys are known, in the kernel's order, the required ones there; the authors are
// a list of strings; the type it names is defined and is the Module; the KUnit suite is
// named after the module and has tests; and rustfmt (when installed) parses the file and
// finds it formatted as the kernel formats Rust.
func TestRustSourceWellFormed(t *testing.T) {
	for _, tc := range renderCases {
		if tc.spec.Lang != Rust {
			continue
		}
		t.Run(tc.golden, func(t *testing.T) {
			files, err := Render(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			mod, _ := ModuleName(tc.spec.Name, Rust)
			src := string(fileData(t, files, mod+".rs"))
			m := regexp.MustCompile(`(?s)\nmodule! \{\n(.*?)\n\}\n`).FindStringSubmatch(src)
			if m == nil {
				t.Fatalf("no module! block in\n%s", src)
			}
			var keys []string
			values := map[string]string{}
			for _, line := range strings.Split(m[1], "\n") {
				k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
				if !ok || !strings.HasSuffix(v, ",") {
					t.Fatalf("module! line %q is not `key: value,`", line)
				}
				keys = append(keys, k)
				values[k] = strings.TrimSuffix(v, ",")
			}
			last := -1
			for _, k := range keys {
				i := slices.Index(rustModuleKeys, k)
				if i < 0 {
					t.Errorf("module! key %q is unknown to the kernel's macro", k)
				}
				if i <= last {
					t.Errorf("module! keys %v are not in the kernel's order %v", keys, rustModuleKeys)
				}
				last = i
			}
			for _, k := range rustRequiredKeys {
				if !slices.Contains(keys, k) {
					t.Errorf("module! lacks the required key %q", k)
				}
			}
			if tc.spec.Author != "" && values["authors"] != `["`+tc.spec.Author+`"]` {
				t.Errorf("authors: %s, want [%q]", values["authors"], tc.spec.Author)
			}
			if tc.spec.Author == "" && slices.Contains(keys, "authors") {
				t.Errorf("authors given without an author: %s", values["authors"])
			}
			if values["name"] != `"`+mod+`"` || values["license"] != `"GPL"` {
				t.Errorf("name %s, license %s; want %q and \"GPL\"", values["name"], values["license"], mod)
			}
			typ := values["type"]
			for _, want := range []string{"struct " + typ + ";", "impl kernel::Module for " + typ + " {", "#[kunit_tests(" + mod + ")]", "#[test]"} {
				if !strings.Contains(src, want) {
					t.Errorf("the source lacks %q", want)
				}
			}
			rustfmtCheck(t, src)
		})
	}
}

func rustfmtCheck(t *testing.T, src string) {
	t.Helper()
	if _, err := exec.LookPath("rustfmt"); err != nil {
		t.Log("no rustfmt here: the Rust source's syntax is left to the end-to-end test")
		return
	}
	cmd := exec.Command("rustfmt", "--check", "--edition", "2021", "--config", "newline_style=Unix")
	cmd.Stdin = strings.NewReader(src)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("rustfmt --check: %v\n%s", err, out.String())
	}
}

// TestCSourceWellFormed checks what can be checked of the C skeleton without kernel headers:
// braces, parentheses and #if blocks balance; every KUnit case is a function defined in the
// file; the suite is named after the module; init and exit are registered; the license is
// given.
func TestCSourceWellFormed(t *testing.T) {
	for _, tc := range renderCases {
		if tc.spec.Lang != C {
			continue
		}
		t.Run(tc.golden, func(t *testing.T) {
			files, err := Render(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			mod, _ := ModuleName(tc.spec.Name, C)
			src := string(fileData(t, files, mod+".c"))
			code := regexp.MustCompile(`(?s)/\*.*?\*/|//[^\n]*|"(?:[^"\\]|\\.)*"`).ReplaceAllString(src, "")
			for _, p := range []string{"{}", "()", "[]"} {
				if strings.Count(code, p[:1]) != strings.Count(code, p[1:]) {
					t.Errorf("unbalanced %s in the C source", p)
				}
			}
			if ifs, endifs := len(regexp.MustCompile(`(?m)^#if`).FindAllString(code, -1)), strings.Count(code, "\n#endif"); ifs != endifs {
				t.Errorf("%d #if and %d #endif", ifs, endifs)
			}
			for _, c := range regexp.MustCompile(`KUNIT_CASE\((\w+)\)`).FindAllStringSubmatch(code, -1) {
				if !strings.Contains(code, "static void "+c[1]+"(struct kunit *test)\n{") {
					t.Errorf("KUnit case %s is not defined as a test function", c[1])
				}
			}
			for _, want := range []string{
				`.name = "` + mod + `",`, "kunit_test_suite(" + mod + "_suite);",
				"static int __init " + mod + "_init(void)", "module_init(" + mod + "_init);",
				"static void __exit " + mod + "_exit(void)", "module_exit(" + mod + "_exit);",
				`MODULE_LICENSE("GPL");`,
			} {
				if !strings.Contains(src, want) {
					t.Errorf("the source lacks %q", want)
				}
			}
			if hasAuthor := strings.Contains(src, "MODULE_AUTHOR("); hasAuthor != (tc.spec.Author != "") {
				t.Errorf("MODULE_AUTHOR present %v with author %q", hasAuthor, tc.spec.Author)
			}
		})
	}
}

func fileData(t *testing.T, files []File, name string) []byte {
	t.Helper()
	for _, f := range files {
		if f.Name == name {
			return f.Data
		}
	}
	t.Fatalf("no file %s among the skeleton's", name)
	return nil
}

// TestWrite: the skeleton lands in parent/NAME, an empty directory included, and is a
// module kmodvm runs (module.Detect names it); its Makefile calls kbuild on its own
// directory. An existing file, symlink or non-empty directory is refused and left as it was;
// nothing temporary is left behind either way.
func TestWrite(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, target string)
		refuse bool
	}{
		{name: "new"},
		{name: "empty dir", setup: func(t *testing.T, target string) { mkdir(t, target) }},
		{name: "non-empty dir", refuse: true, setup: func(t *testing.T, target string) {
			mkdir(t, target)
			writeFile(t, filepath.Join(target, "mine.c"), "int mine;\n")
		}},
		{name: "dir with a hidden file", refuse: true, setup: func(t *testing.T, target string) {
			mkdir(t, target)
			writeFile(t, filepath.Join(target, ".git"), "gitdir: elsewhere\n")
		}},
		{name: "file", refuse: true, setup: func(t *testing.T, target string) { writeFile(t, target, "mine\n") }},
		{name: "symlink to an empty dir", refuse: true, setup: func(t *testing.T, target string) {
			empty := filepath.Join(t.TempDir(), "empty")
			mkdir(t, empty)
			if err := os.Symlink(empty, target); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		for _, lang := range []Lang{Rust, C} {
			t.Run(tt.name+"/"+string(lang), func(t *testing.T) {
				parent := t.TempDir()
				target := filepath.Join(parent, "my-mod")
				if tt.setup != nil {
					tt.setup(t, target)
				}
				before := listTree(t, parent)
				dir, files, err := Write(parent, Spec{Name: "my-mod", Lang: lang, Author: "A B"})
				if tt.refuse {
					var ie *InputError
					if !errors.As(err, &ie) || !strings.Contains(err.Error(), "already exists and is not an empty directory") || !strings.Contains(err.Error(), "hint:") {
						t.Fatalf("Write = %v, want a refusal with a hint", err)
					}
					if after := listTree(t, parent); !slices.Equal(before, after) {
						t.Errorf("a refused Write changed %s: %v -> %v", parent, before, after)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if dir != target {
					t.Errorf("dir %s, want %s", dir, target)
				}
				entries, _ := os.ReadDir(parent)
				if len(entries) != 1 {
					t.Errorf("%s holds %d entries, want the module alone (no temporary directory)", parent, len(entries))
				}
				if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o755 {
					t.Errorf("module dir: %v, mode %v; want 0755", err, st.Mode().Perm())
				}
				for _, f := range files {
					got, err := os.ReadFile(filepath.Join(dir, f.Name))
					if err != nil || !bytes.Equal(got, f.Data) {
						t.Errorf("%s on disk differs from the rendered file (%v)", f.Name, err)
					}
				}
				src, err := module.Detect(dir)
				if err != nil || !slices.Equal(src.Modules, []string{"my_mod"}) {
					t.Errorf("module.Detect = %+v, %v; want the module my_mod", src, err)
				}
				makeDryRun(t, dir)
			})
		}
	}
}

// makeDryRun checks the Makefile with make, its recursive make echoed: `make` calls kbuild
// on the module's own directory, against KDIR.
func makeDryRun(t *testing.T, dir string) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Log("no make here: the Makefile is left to the golden files")
		return
	}
	for _, tc := range []struct{ target, want string }{
		{"", "make -C /kdir M=" + dir + " LLVM=1 modules"},
		{"clean", "make -C /kdir M=" + dir + " LLVM=1 clean"},
	} {
		args := []string{"-s", "KDIR=/kdir", "MAKE=echo make"}
		if tc.target != "" {
			args = append(args, tc.target)
		}
		cmd := exec.Command("make", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MAKELEVEL=")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("make %s: %v\n%s\nwant %q", tc.target, err, out, tc.want)
		}
	}
}

func TestWriteParentMissing(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "nope")
	_, _, err := Write(parent, Spec{Name: "hello", Lang: Rust})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "does not exist") || !strings.Contains(err.Error(), "hint:") {
		t.Fatalf("Write into a missing parent = %v, want a refusal with a hint", err)
	}
	if _, err := os.Stat(parent); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the missing parent was created: %v", err)
	}
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// listTree is every path under root with its size, for before/after comparisons.
func listTree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, strings.TrimPrefix(p, root)+" "+info.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWriteRace: a directory filled by someone else while the files were being written is
// not overwritten, and the temporary directory is gone.
func TestWriteRace(t *testing.T) {
	parent := t.TempDir()
	testHookBeforeRename = func(dir string) {
		mkdir(t, dir)
		writeFile(t, filepath.Join(dir, "theirs.c"), "int theirs;\n")
	}
	t.Cleanup(func() { testHookBeforeRename = nil })
	_, _, err := Write(parent, Spec{Name: "hello", Lang: C})
	var ie *InputError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("Write = %v, want a refusal", err)
	}
	got := listTree(t, parent)
	want := []string{" " + dirMode(t, parent), "/hello " + dirMode(t, filepath.Join(parent, "hello")), "/hello/theirs.c -rw-r--r--"}
	if !slices.Equal(got, want) {
		t.Errorf("after the refused rename: %v, want %v", got, want)
	}
}

func dirMode(t *testing.T, p string) string {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().String()
}
