package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestIDEErrors: what `kmodvm ide` says before it runs anything in a toolchain root: no
// module, no kernel, a kernel built before entries kept their Rust sources, a VM whose
// toolchain root is gone. Each is one paragraph with a hint, and no rust-project.json is
// written. (The generation itself is provision/rustproject's tests and TestE2EIDE.)
func TestIDEErrors(t *testing.T) {
	module := map[string]string{"Kbuild": "obj-m := hello.o\n", "hello.rs": "//! hello\n"}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) // dir is the module's directory
		args  []string
		code  int
		want  []string
	}{
		{name: "not a module", setup: func(t *testing.T, dir string) { isolate(t) },
			code: 2, want: []string{"has no Kbuild or Makefile", "hint: "}},
		{name: "no kernel", setup: func(t *testing.T, dir string) {
			isolate(t)
			writeFiles(t, dir, module)
		}, code: 1, want: []string{"the kernel kmodvm.yaml selects is not built; hint: `kmodvm kernel build` builds it"}},
		{name: "no such VM", setup: func(t *testing.T, dir string) {
			isolate(t)
			writeFiles(t, dir, module)
		}, args: []string{"-n", "other"}, code: 1, want: []string{`there is no VM named "other"`}},
		{name: "kernel built before rust-src", setup: func(t *testing.T, dir string) {
			bindingsVM(t, false)
			writeFiles(t, dir, module)
		}, code: 1, want: []string{"was built before kmodvm kept its Rust sources", "hint: `rm -rf ", " && kmodvm kernel build`"}},
		{name: "toolchain root gone", setup: func(t *testing.T, dir string) {
			entry := bindingsVM(t, false)
			writeFiles(t, filepath.Join(entry, "rust-src"), map[string]string{"rust/kernel/lib.rs": "//! kernel\n"})
			writeFiles(t, dir, module)
		}, code: 1, want: []string{"the toolchain root VM kmodvm was made with is gone", "hint: `kmodvm destroy -n kmodvm && kmodvm up -n kmodvm`"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			r := runIn(t, "", append(append([]string{"ide"}, tc.args...), dir)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			checkUserMessage(t, r.stderr)
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "rust-project.json")); !os.IsNotExist(err) {
				t.Errorf("rust-project.json written (%v)", err)
			}
		})
	}
}
