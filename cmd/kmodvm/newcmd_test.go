package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
	"github.com/kmodvm/kmodvm/provision/module"
)

// TestNew: `kmodvm new` writes a module that kmodvm runs (its kmodvm.yaml loads and points
// at it, its Kbuild names it), prints its directory (or the JSON) on stdout and the next
// commands on stderr; it needs no settings, so a broken kmodvm.yaml where it runs is no
// matter.
func TestNew(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		dir        string // relative to the working directory
		module     string
		source     string
		json       bool
		nextPrefix string // how the next commands name the directory
	}{
		{name: "rust by default", args: []string{"new", "hello"}, dir: "hello", module: "hello", source: "hello.rs", nextPrefix: "hello"},
		{name: "c in a parent", args: []string{"new", "--lang", "c", "--dir", "mods", "my-driver"}, dir: "mods/my-driver",
			module: "my_driver", source: "my_driver.c", nextPrefix: "mods/my-driver"},
		{name: "json", args: []string{"new", "--json", "--lang", "rust", "probe"}, dir: "probe", module: "probe", source: "probe.rs", json: true, nextPrefix: "probe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			wd := t.TempDir()
			writeFiles(t, wd, map[string]string{"kmodvm.yaml": "nmae: typo\n", "mods/.keep": ""})
			res := runIn(t, wd, tt.args...)
			if res.code != exitOK {
				t.Fatalf("exit %d", res.code)
			}
			dir := filepath.Join(wd, tt.dir)
			wantFiles := []string{"Kbuild", "Makefile", tt.source, ".gitignore", "kmodvm.yaml"}
			if tt.json {
				var got newJSON
				if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
					t.Fatalf("stdout is not JSON: %v", err)
				}
				if got.Schema != schemaNew || got.Dir != dir || got.Module != tt.module || got.Lang != "rust" || !slices.Equal(got.Files, wantFiles) {
					t.Errorf("new --json = %+v, want dir %s module %s files %v", got, dir, tt.module, wantFiles)
				}
			} else if res.stdout != dir+"\n" {
				t.Errorf("stdout %q, want the directory %s", res.stdout, dir)
			}
			for _, want := range []string{"kmodvm run " + tt.nextPrefix + " ", "kmodvm test " + tt.nextPrefix + " ", strings.Join(wantFiles, ", ")} {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			for _, f := range wantFiles {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s not written: %v", f, err)
				}
			}
			cfg, err := config.Load(filepath.Join(dir, "kmodvm.yaml"))
			if err != nil {
				t.Fatalf("the module's kmodvm.yaml: %v", err)
			}
			if err := cfg.Validate(); err != nil || cfg.Module.Dir != dir {
				t.Errorf("the module's kmodvm.yaml: module.dir %q, %v; want %s", cfg.Module.Dir, err, dir)
			}
			src, err := module.Detect(cfg.Module.Dir)
			if err != nil || !slices.Equal(src.Modules, []string{tt.module}) {
				t.Errorf("module.Detect = %+v, %v; want %s", src, err, tt.module)
			}
		})
	}
}

// TestNewRefuses: a name that is no module name, an unknown language, a parent that does not
// exist and a directory that is not empty are usage errors with a hint, and nothing is
// written.
func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{name: "bad name", args: []string{"new", "my.mod"}, stderr: `module name "my.mod" has '.' in it`},
		{name: "rust keyword", args: []string{"new", "fn"}, stderr: "Rust keyword"},
		{name: "bad lang", args: []string{"new", "--lang", "zig", "hello"}, stderr: `--lang "zig" is not rust or c`},
		{name: "no parent", args: []string{"new", "--dir", "nope", "hello"}, stderr: "nope does not exist"},
		{name: "not empty", args: []string{"new", "taken"}, stderr: "taken already exists and is not an empty directory"},
		{name: "no name", args: []string{"new"}, stderr: "accepts 1 arg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			wd := t.TempDir()
			writeFiles(t, wd, map[string]string{"taken/mine.rs": "// mine\n"})
			res := runIn(t, wd, tt.args...)
			if res.code != exitUsage {
				t.Errorf("exit %d, want %d", res.code, exitUsage)
			}
			checkUserMessage(t, res.stderr)
			if !strings.Contains(res.stderr, tt.stderr) || !strings.Contains(res.stderr, "hint:") {
				t.Errorf("stderr lacks %q and a hint", tt.stderr)
			}
			entries, _ := os.ReadDir(wd)
			if len(entries) != 1 || entries[0].Name() != "taken" {
				t.Errorf("the working directory holds %v, want only taken/", entries)
			}
			if data, err := os.ReadFile(filepath.Join(wd, "taken/mine.rs")); err != nil || string(data) != "// mine\n" {
				t.Errorf("taken/mine.rs changed: %q, %v", data, err)
			}
		})
	}
}
