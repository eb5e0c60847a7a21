package rustproject

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/shellquote"
)

// fakeToolRoot makes a toolchain root whose dynamic loader is a script that runs the
// program after --library-path DIR, with the library dir in LIBS, and whose rustc prints
// sysroot and whose proc-macro server prints its arguments.
func fakeToolRoot(t *testing.T, dir, sysroot string) {
	t.Helper()
	for path, script := range map[string]string{
		rootLoader:      "#!/bin/sh\n[ \"$1\" = --library-path ] || exit 9\nLIBS=$2 ; export LIBS ; shift 2\nexec \"$@\"\n",
		"usr/bin/rustc": "#!/bin/sh\necho " + shellquote.Quote(sysroot) + "\n",
		"usr/libexec/rust-analyzer-proc-macro-srv": "#!/bin/sh\necho \"srv $* libs=$LIBS\"\n",
	} {
		writeTestFile(t, filepath.Join(dir, path), script)
		if err := os.Chmod(filepath.Join(dir, path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, rootLibs), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestHostSysroot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a root's dir, with 'quotes'") // the scripts quote it
	fakeToolRoot(t, root, filepath.Join(root, "usr"))
	dir := filepath.Join(t.TempDir(), "sysroot")
	for range 2 { // making it again replaces it
		if err := HostSysroot(t.Context(), root, dir); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(filepath.Join(dir, "libexec/rust-analyzer-proc-macro-srv"), "--version", "a b").CombinedOutput()
	if want := "srv --version a b libs=" + filepath.Join(root, rootLibs) + "\n"; err != nil || string(out) != want {
		t.Errorf("the sysroot's proc-macro server: %q, %v; want %q", out, err, want)
	}
	if l, err := os.Readlink(filepath.Join(dir, "lib")); err != nil || l != filepath.Join(root, "usr/lib") {
		t.Errorf("lib -> %q, %v; want the root's /usr/lib", l, err)
	}
}

func TestHostSysrootErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(root string)
		want  []string
	}{
		{name: "no proc-macro server", setup: func(root string) {
			fakeToolRoot(t, root, filepath.Join(root, "usr"))
			os.Remove(filepath.Join(root, "usr/libexec/rust-analyzer-proc-macro-srv"))
		}, want: []string{"lacks /usr/libexec/rust-analyzer-proc-macro-srv", "hint: "}},
		{name: "no loader", setup: func(root string) {
			fakeToolRoot(t, root, filepath.Join(root, "usr"))
			os.Remove(filepath.Join(root, rootLoader))
		}, want: []string{"no dynamic loader"}},
		{name: "rustc does not run", setup: func(root string) {
			fakeToolRoot(t, root, filepath.Join(root, "usr"))
			writeTestFile(t, filepath.Join(root, "usr/bin/rustc"), "#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n")
		}, want: []string{"does not run on this host", "error while loading shared libraries"}},
		{name: "rustc of another sysroot", setup: func(root string) {
			fakeToolRoot(t, root, "/usr")
		}, want: []string{`says its sysroot is "/usr"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(root)
			err := HostSysroot(t.Context(), root, filepath.Join(t.TempDir(), "sysroot"))
			if err == nil {
				t.Fatal("HostSysroot succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
		})
	}
}
