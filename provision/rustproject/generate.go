// Package rustproject makes the rust-project.json that lets an editor's rust-analyzer
// understand an out-of-tree kernel module. The kernel's own generator (`make rust-analyzer`
// with M=, Linux 6.6 and later) runs in the toolchain root against the kernel's staged
// build tree, as the module's build does; the paths it prints are the root's, and Rewrite
// turns them into this host's: the kernel's Rust sources kept in its cache entry, the
// toolchain root's rust-src, and a sysroot made for this host (HostSysroot) whose rustc and
// proc-macro server run here.
package rustproject

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/provision/kernel"
)

// FileName is the file rust-analyzer looks for at the root of the directory an editor opens.
const FileName = "rust-project.json"

// moduleMount is where the module's copy is in the root while the generator runs: beside
// the kernel tree, under one tmpfs.
const moduleMount = "/usr/src/kmodvm/module"

// Root runs commands in the toolchain root (images.Root satisfies it).
type Root interface {
	Command(ctx context.Context, opt images.RunOptions, argv ...string) *exec.Cmd
}

// Generate runs the kernel's generator for the module in dir against the staged kernel
// build tree kdir, in the root, and returns what it wrote: a rust-project.json with the
// root's paths. It works on a copy of the module's Kbuild and Makefile files and Rust
// sources (what the generator reads), so that `make` writes nothing in dir: a
// rust-project.json there is Write's to judge.
func Generate(ctx context.Context, root Root, kdir, dir string) ([]byte, error) {
	scratch, err := os.MkdirTemp("", "kmodvm-ide-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	if err := copyModule(ctx, dir, scratch); err != nil {
		return nil, err
	}
	argv := []string{"make", "-C", kernel.GuestTree, "M=" + moduleMount, "LLVM=1", "ARCH=x86_64", "rust-analyzer"}
	var out bytes.Buffer
	cmd := root.Command(ctx, images.RunOptions{
		Binds: []images.Bind{{Host: kdir, Guest: kernel.GuestTree, ReadOnly: true}, {Host: scratch, Guest: moduleMount}},
		Dir:   moduleMount, Stdout: &out, Stderr: &out,
		// As for the module's build: the root stays unchanged; HOME and the mount points of
		// the kernel tree and the module are on tmpfs. (Not all of /usr/src: the root's
		// rust-src is there.)
		ReadOnlyRoot: true, Tmpfs: []string{"/root", path.Dir(kernel.GuestTree)},
	}, argv...)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("generate %s: %w", FileName, ctx.Err())
		}
		return nil, fmt.Errorf("`%s` in the toolchain root failed: %w\n%s\nhint: the kernel's rust-analyzer target for out-of-tree modules is in Linux 6.6 and later; it needs the kernel built with CONFIG_RUST",
			strings.Join(argv, " "), err, indent(lastLines(out.String(), 15)))
	}
	data, err := os.ReadFile(filepath.Join(scratch, FileName))
	if err != nil {
		return nil, fmt.Errorf("`%s` wrote no %s: %w\n%s", strings.Join(argv, " "), FileName, err, indent(lastLines(out.String(), 15)))
	}
	return data, nil
}

// copyModule copies what the generator reads of the module in dir to scratch: its Rust
// sources, and the Kbuild and Makefile files that say which of them are crate roots.
// Hidden directories (.git) are left out.
func copyModule(ctx context.Context, dir, scratch string) error {
	_, err := ondisk.CopyTree(ctx, dir, scratch, ondisk.CopyOptions{Skip: func(rel string, d fs.DirEntry) bool {
		name := d.Name()
		if d.IsDir() {
			return strings.HasPrefix(name, ".")
		}
		return !d.Type().IsRegular() || !(strings.HasSuffix(name, ".rs") || name == "Kbuild" || name == "Makefile")
	}})
	if err != nil {
		return fmt.Errorf("copy the module for %s: %w", FileName, err)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
