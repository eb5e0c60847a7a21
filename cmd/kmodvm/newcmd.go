package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/scaffold"
)

// newJSON is `new --json`: the module written.
type newJSON struct {
	Schema string   `json:"schema"`
	Dir    string   `json:"dir"`
	Module string   `json:"module"`
	Lang   string   `json:"lang"`
	Files  []string `json:"files"`
}

func (a *app) newCmd() *cobra.Command {
	var lang, parent string
	c := &cobra.Command{
		Use:   "new NAME",
		Short: "Write a new module's skeleton: Kbuild, Makefile, Rust or C source with a KUnit suite",
		Long: `Write the skeleton of an out-of-tree kernel module into PARENT/NAME (--dir, default
the current directory): Kbuild, a Makefile for a plain make against KDIR, the source
in Rust (default) or C with a KUnit suite that passes, a .gitignore for kbuild's
outputs and a minimal kmodvm.yaml. NAME is the module's name: letters, digits, _ and
-, starting with a letter (a - is _ in the module's name; the directory keeps it).
Nothing is overwritten: PARENT/NAME must not exist, or be an empty directory. The
module's author is git's user.name and user.email, when set.

stdout is the module's directory (--json: a kmodvm.new/v1 object); then
kmodvm run NAME builds, loads and judges it, kmodvm test NAME runs its tests.`,
		Args:        cobra.ExactArgs(1),
		Annotations: map[string]string{noSetup: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := scaffold.ParseLang(lang)
			if err != nil {
				return withCode(exitUsage, err)
			}
			spec := scaffold.Spec{Name: args[0], Lang: l, Author: gitAuthor(cmd.Context())}
			dir, files, err := scaffold.Write(parent, spec)
			var ie *scaffold.InputError
			if errors.As(err, &ie) {
				return withCode(exitUsage, err)
			}
			if err != nil {
				return err
			}
			return a.printNew(dir, spec, files)
		},
	}
	f := c.Flags()
	f.StringVar(&lang, "lang", string(scaffold.Rust), "the module's language: rust or c")
	f.StringVar(&parent, "dir", ".", "the directory to write the module's directory in")
	f.BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

// printNew says what `new` wrote: the directory on stdout (or the JSON), and on stderr the
// files and the commands that come next.
func (a *app) printNew(dir string, spec scaffold.Spec, files []scaffold.File) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	mod, _ := scaffold.ModuleName(spec.Name, spec.Lang) // Write checked it
	names := make([]string, len(files))
	for i, f := range files {
		names[i] = f.Name
	}
	lang := map[scaffold.Lang]string{scaffold.Rust: "Rust", scaffold.C: "C"}[spec.Lang]
	fmt.Fprintf(a.stderr, "==> wrote the %s module %s in %s: %s\n", lang, mod, dir, strings.Join(names, ", "))
	q := shellWord(dir)
	fmt.Fprintf(a.stderr, "next:\n  kmodvm run %s     build it, load it in the sandbox VM (started when it is not running), judge, unload\n  kmodvm test %s    run its KUnit tests\n", q, q)
	if a.jsonOut {
		return a.printJSON(newJSON{Schema: schemaNew, Dir: abs, Module: mod, Lang: string(spec.Lang), Files: names})
	}
	_, err = fmt.Fprintln(a.stdout, abs)
	return err
}

// gitAuthor is "user.name <user.email>" from git's configuration, or "" when git, the
// name, or a name a module can carry (printable ASCII) is missing.
func gitAuthor(ctx context.Context) string {
	get := func(key string) string {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "git", "config", "--get", key).Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	name := get("user.name")
	if name == "" {
		return ""
	}
	author := name
	if email := get("user.email"); email != "" {
		author += " <" + email + ">"
	}
	if scaffold.CheckAuthor(author) != nil {
		if scaffold.CheckAuthor(name) != nil {
			return ""
		}
		return name
	}
	return author
}
