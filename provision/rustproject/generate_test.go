package rustproject

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/kernel"
)

// fakeRoot runs script on the host in place of the command, with the module's copy (the
// host side of its bind) as $1 and the working directory.
type fakeRoot struct {
	script string
	opt    images.RunOptions
	argv   []string
}

func (f *fakeRoot) Command(ctx context.Context, opt images.RunOptions, argv ...string) *exec.Cmd {
	f.opt, f.argv = opt, argv
	var module string
	for _, b := range opt.Binds {
		if b.Guest == moduleMount {
			module = b.Host
		}
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", f.script, "sh", module)
	cmd.Dir = module
	cmd.Stdout, cmd.Stderr = opt.Stdout, opt.Stderr
	return cmd
}

// The generator runs on a copy of the module's Rust sources and Kbuild files, with the
// kernel tree read-only and the root unchanged, and the module's directory is not touched.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	for f, s := range map[string]string{
		"Kbuild": "obj-m := hello.o\n", "Makefile": "all:\n", "hello.rs": "//! hello\n", "sub/Kbuild": "obj-m := sub.o\n",
		"sub/sub.rs": "//! sub\n", "hello.ko": "built", FileName: "the user's own\n", ".git/x.rs": "not the module's\n",
	} {
		writeTestFile(t, filepath.Join(dir, f), s)
	}
	// The fake generator lists what it was given, as the real one globs it.
	root := &fakeRoot{script: `echo "make: Entering directory"; l=$(find . -type f | sort | tr '\n' ' '); printf %s "$l" > rust-project.json`}
	kdir := t.TempDir()
	got, err := Generate(t.Context(), root, kdir, dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "./Kbuild ./Makefile ./hello.rs ./sub/Kbuild ./sub/sub.rs "; string(got) != want {
		t.Errorf("the generator saw %q, want %q", got, want)
	}
	if !slices.Contains(root.argv, "M="+moduleMount) || !slices.Contains(root.argv, "rust-analyzer") || root.argv[2] != kernel.GuestTree {
		t.Errorf("argv %q", root.argv)
	}
	if !root.opt.ReadOnlyRoot || !slices.Contains(root.opt.Binds, images.Bind{Host: kdir, Guest: kernel.GuestTree, ReadOnly: true}) {
		t.Errorf("options %+v: want a read-only root and kernel tree", root.opt)
	}
	if s := readTestFile(t, filepath.Join(dir, FileName)); s != "the user's own\n" {
		t.Errorf("the module's own rust-project.json became %q", s)
	}
}

func TestGenerateErrors(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		want         []string
	}{
		{name: "make fails", script: `echo "make: *** No rule to make target 'rust-analyzer'.  Stop."; exit 2`,
			want: []string{"rust-analyzer` in the toolchain root failed", "No rule to make target", "hint: ", "Linux 6.6 and later"}},
		{name: "make writes nothing", script: `echo done`, want: []string{"wrote no rust-project.json", "done"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTestFile(t, filepath.Join(dir, "hello.rs"), "//! hello\n")
			_, err := Generate(t.Context(), &fakeRoot{script: tc.script}, t.TempDir(), dir)
			if err == nil {
				t.Fatal("Generate succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
			}
		})
	}
}

// The scratch copy is removed, whatever happens.
func TestGenerateLeavesNoScratch(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "hello.rs"), "//! hello\n")
	Generate(t.Context(), &fakeRoot{script: "exit 1"}, t.TempDir(), dir)
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}
