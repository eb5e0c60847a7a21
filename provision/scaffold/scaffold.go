// Package scaffold writes the skeleton of a new out-of-tree kernel module (`kmodvm new`):
// Kbuild, a Makefile for a plain `make`, the source in Rust or C with a KUnit suite that
// passes, a .gitignore for kbuild's outputs and a minimal kmodvm.yaml. The files come from
// templates embedded in the binary; the directory appears whole, or not at all.
package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/template"
)

// Lang is the language of the module's source.
type Lang string

// The languages a skeleton can be written in.
const (
	Rust Lang = "rust"
	C    Lang = "c"
)

// Spec is the module to write.
type Spec struct {
	Name   string // its directory's name: letters, digits, _ and -, starting with a letter
	Lang   Lang
	Author string // MODULE_AUTHOR / module!'s authors; "" leaves them out
}

// File is one file of the skeleton.
type File struct {
	Name string // relative to the module directory
	Data []byte
}

// InputError is a request no skeleton can be written for (a bad name, an existing
// directory): the caller's mistake, with a hint.
type InputError struct{ msg string }

func (e *InputError) Error() string { return e.msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{msg: fmt.Sprintf(format, args...)}
}

// maxModuleName is the longest module name the kernel takes (MODULE_NAME_LEN - 1).
const maxModuleName = 55

// ModuleName is the kernel module name of a directory name: '-' becomes '_' (as kbuild
// does), and the rest must be a C and Rust identifier the templates can use.
func ModuleName(name string, lang Lang) (string, error) {
	hint := "hint: use letters, digits, _ and -, starting with a letter, e.g. `kmodvm new my_driver`"
	if name == "" {
		return "", inputErrorf("a module needs a name; %s", hint)
	}
	for i, r := range name {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if i == 0 && !letter {
			return "", inputErrorf("module name %q does not start with a letter: kernel module names are C identifiers; %s", name, hint)
		}
		if !letter && !(r >= '0' && r <= '9') && r != '_' && r != '-' {
			return "", inputErrorf("module name %q has %q in it: kernel module names are C identifiers (a '-' is read as '_'); %s", name, r, hint)
		}
	}
	if len(name) > maxModuleName {
		return "", inputErrorf("module name %q is %d characters long: the kernel takes at most %d; %s", name, len(name), maxModuleName, hint)
	}
	mod := strings.ReplaceAll(name, "-", "_")
	switch lang {
	case Rust:
		if slices.Contains(rustKeywords, mod) {
			return "", inputErrorf("module name %q is a Rust keyword, which cannot name the KUnit suite; hint: pick another name, e.g. `kmodvm new %s_mod`", name, name)
		}
		if t := rustType(mod); slices.Contains(rustTemplateNames, t) {
			return "", inputErrorf("module name %q makes the module's type %s, a name the Rust skeleton uses itself; hint: pick another name, e.g. `kmodvm new %s_mod`", name, t, name)
		}
	case C:
		if slices.Contains(cTemplateNames, mod) {
			return "", inputErrorf("module name %q would make functions named like the kernel's macros (%s_init); hint: pick another name, e.g. `kmodvm new my_%s`", name, mod, name)
		}
	}
	return mod, nil
}

// rustKeywords are Rust's strict and reserved keywords (2024 edition): syn refuses them as
// the suite name of #[kunit_tests].
var rustKeywords = []string{"as", "async", "await", "break", "const", "continue", "crate", "dyn", "else",
	"enum", "extern", "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move",
	"mut", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
	"where", "while", "abstract", "become", "box", "do", "final", "macro", "override", "priv", "try", "typeof",
	"unsized", "virtual", "yield"}

// rustTemplateNames are the names the Rust template uses that a module type of the same name
// would shadow.
var rustTemplateNames = []string{"Greeting", "ThisModule", "Result", "Drop", "Ok"}

// cTemplateNames are module names whose NAME_init and NAME_exit are the kernel's macros.
var cTemplateNames = []string{"module"}

// rustType is the module's type in module!: the name in CamelCase ("my_driver" ->
// "MyDriver").
func rustType(mod string) string {
	var b strings.Builder
	for _, part := range strings.Split(mod, "_") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// CheckAuthor says whether s can be a module's author in both languages: printable ASCII
// (module!'s authors are ASCII strings) without a quote or backslash.
func CheckAuthor(s string) error {
	for _, r := range s {
		if r < ' ' || r > '~' || r == '"' || r == '\\' {
			return inputErrorf("author %q has %q in it: a module's author is printable ASCII without \" or \\; hint: leave it out, or spell it in ASCII", s, r)
		}
	}
	return nil
}

// ParseLang reads --lang.
func ParseLang(s string) (Lang, error) {
	switch Lang(s) {
	case Rust, C:
		return Lang(s), nil
	}
	return "", inputErrorf("--lang %q is not rust or c; hint: `kmodvm new --lang c NAME` writes a C module, Rust is the default", s)
}

//go:embed templates
var templates embed.FS

// data is what the templates see.
type data struct {
	Module string // the kernel module name
	Type   string // Rust: the module's type
	Source string // the source file's name
	Author string
}

// Render returns the skeleton's files, in the order they are listed to the user.
func Render(s Spec) ([]File, error) {
	if _, err := ParseLang(string(s.Lang)); err != nil {
		return nil, err
	}
	mod, err := ModuleName(s.Name, s.Lang)
	if err != nil {
		return nil, err
	}
	if err := CheckAuthor(s.Author); err != nil {
		return nil, err
	}
	d := data{Module: mod, Type: rustType(mod), Author: s.Author}
	srcTmpl := "module.rs.tmpl"
	d.Source = mod + ".rs"
	if s.Lang == C {
		srcTmpl, d.Source = "module.c.tmpl", mod+".c"
	}
	var files []File
	for _, f := range []struct{ name, tmpl string }{
		{"Kbuild", "Kbuild.tmpl"},
		{"Makefile", "Makefile.tmpl"},
		{d.Source, srcTmpl},
		{".gitignore", "gitignore.tmpl"},
		{"kmodvm.yaml", "kmodvm.yaml.tmpl"},
	} {
		t, err := template.ParseFS(templates, "templates/"+f.tmpl)
		if err != nil {
			return nil, fmt.Errorf("read template %s: %w", f.tmpl, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return nil, fmt.Errorf("render %s: %w", f.name, err)
		}
		files = append(files, File{Name: f.name, Data: b.Bytes()})
	}
	return files, nil
}

// Write renders the skeleton into parent/s.Name and returns that directory and the files
// written. The directory must not exist, or be empty: nothing is ever overwritten. The
// files are written in a temporary directory beside it, renamed into place when complete;
// a failure leaves nothing behind.
func Write(parent string, s Spec) (string, []File, error) {
	files, err := Render(s)
	if err != nil {
		return "", nil, err
	}
	st, err := os.Stat(parent)
	if err != nil || !st.IsDir() {
		return "", nil, inputErrorf("the parent directory %s does not exist or is not a directory; hint: create it first (mkdir -p %s), or pass another --dir", parent, parent)
	}
	dir := filepath.Join(parent, s.Name)
	if err := checkFree(dir); err != nil {
		return "", nil, err
	}
	tmp, err := os.MkdirTemp(parent, "."+s.Name+".kmodvm-new-")
	if err != nil {
		return "", nil, fmt.Errorf("create a temporary directory in %s: %w", parent, err)
	}
	done := false
	defer func() {
		if !done {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", nil, fmt.Errorf("make %s readable: %w", tmp, err)
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(tmp, f.Name), f.Data, 0o644); err != nil {
			return "", nil, fmt.Errorf("write %s: %w", f.Name, err)
		}
	}
	if testHookBeforeRename != nil {
		testHookBeforeRename(dir)
	}
	// rename(2) replaces an empty directory, and refuses one that something filled meanwhile
	// (os.Rename refuses every existing directory).
	if err := syscall.Rename(tmp, dir); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTDIR) {
			return "", nil, existsError(dir)
		}
		return "", nil, fmt.Errorf("move the new module into %s: %w", dir, err)
	}
	done = true
	return dir, files, nil
}

// testHookBeforeRename, set by tests, runs once the files are written, before the rename.
var testHookBeforeRename func(dir string)

// checkFree accepts a directory that does not exist, or an empty one.
func checkFree(dir string) error {
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("look at %s: %w", dir, err)
	case !st.IsDir():
		return existsError(dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("look into %s: %w", dir, err)
	}
	if len(entries) > 0 {
		return existsError(dir)
	}
	return nil
}

func existsError(dir string) error {
	return inputErrorf("%s already exists and is not an empty directory: kmodvm new never overwrites anything; hint: pick another name, or another parent with --dir", dir)
}
