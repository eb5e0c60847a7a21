package kernel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/ktrace"
)

// Toolchain runs commands in a toolchain root on the host (images.Root satisfies it).
type Toolchain interface {
	Command(ctx context.Context, opt images.RunOptions, argv ...string) *exec.Cmd
}

// addr2line is LLVM's addr2line in the toolchain root: the root's llvm package (which the
// LLVM=1 kernel build needs for llvm-ar, llvm-nm, ...) installs it on the PATH.
const addr2line = "llvm-addr2line"

// linker is LLVM's linker in the toolchain root (the LLVM=1 kernel build links with it).
const linker = "ld.lld"

// linkDir is where the host directory a module's linked copy is written to is bound, read-write,
// inside the root.
const linkDir = "/tmp/kmodvm-link"

// symbolizeDir is where the object of one query is bound, read-only, inside the root: under
// /tmp, a fresh tmpfs in every command (images.Root.Command), so the bind's mount point can
// be made in a root mounted read-only.
const symbolizeDir = "/tmp/kmodvm-symbolize"

// NewSymbolizer returns the symbolizer for traces of a guest running a kernel kmodvm built:
// llvm-addr2line run in the toolchain root tc on the host, once per object with all of its
// addresses, with the one object it reads bound read-only into the root (a root mounted read-only; nothing else of
// the host is visible to it).
//
// vmlinux is the booted kernel's Result.Vmlinux(): "" for a kernel built without debug
// information, whose frames then get ktrace.ErrNoLine (with a hint to use kernel.debug).
// moduleDirs are the directories host builds leave their .ko files in (module.Options
// BuildDir); module "foo_bar" is foo_bar.ko or foo-bar.ko there, a regular file. A module
// with no .ko there (built in the guest, or not by kmodvm) gets ktrace.ErrNoLine too: the
// trace keeps the kernel's own symbol+offset. The directories may not exist yet: they are
// looked in at each query.
func NewSymbolizer(tc Toolchain, vmlinux string, moduleDirs ...string) (*ktrace.Addr2Line, error) {
	// The command line is bwrap's (or a fake's); only its program is fixed here, its
	// arguments, the bind of the object included, are built per object below.
	probe := tc.Command(context.Background(), symbolizeOptions("", ""), addr2line)
	if probe.Err != nil {
		return nil, fmt.Errorf("prepare %s in the toolchain root: %w", addr2line, probe.Err)
	}
	if vmlinux != "" {
		abs, err := filepath.Abs(vmlinux)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", vmlinux, err)
		}
		vmlinux = abs
	}
	dirs := make([]string, 0, len(moduleDirs))
	for _, d := range moduleDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", d, err)
		}
		dirs = append(dirs, abs)
	}
	command := func(object string, queries []string) *exec.Cmd {
		inside := path.Join(symbolizeDir, filepath.Base(object))
		argv := append([]string{addr2line}, ktrace.Addr2LineArgs(inside, queries)...)
		return tc.Command(context.Background(), symbolizeOptions(object, inside), argv...)
	}
	return &ktrace.Addr2Line{
		Command: []string{probe.Path},
		Object: func(module string) (string, error) {
			obj, err := findObject(vmlinux, dirs, module)
			if err != nil {
				return "", err
			}
			// The query does not matter here: a command that cannot be built for this
			// object cannot be built for any.
			if cmd := command(obj, []string{"0"}); cmd.Err != nil {
				return "", fmt.Errorf("prepare %s in the toolchain root for %s: %w", addr2line, obj, cmd.Err)
			}
			return obj, nil
		},
		Args: func(object string, queries []string) []string {
			return command(object, queries).Args[1:]
		},
		Link: func(ctx context.Context, object string) (string, func(), error) {
			return link(ctx, tc, object)
		},
	}, nil
}

// link links a module's .ko into an executable in a new host directory, with ld.lld in the
// toolchain root: every section gets an address of its own (in the .ko, .text and .init.text
// both start at 0), and the debug information is relocated to match, so the module can be
// symbolized by address. The kernel's symbols the module calls are left undefined (0): only
// the module's own code is looked up. done removes the directory.
func link(ctx context.Context, tc Toolchain, object string) (linked string, done func(), err error) {
	dir, err := os.MkdirTemp("", "kmodvm-link-")
	if err != nil {
		return "", nil, fmt.Errorf("link %s for symbolizing: %w", object, err)
	}
	remove := func() { os.RemoveAll(dir) }
	defer func() {
		if err != nil {
			remove()
		}
	}()
	name := filepath.Base(object)
	inside := path.Join(symbolizeDir, name)
	opt := symbolizeOptions(object, inside)
	opt.Binds = append(opt.Binds, images.Bind{Host: dir, Guest: linkDir})
	// --noinhibit-exec: a relocation the linker cannot resolve (the module is not meant to be
	// linked alone) is a warning, and the copy is written all the same.
	cmd := tc.Command(ctx, opt, linker, "-o", path.Join(linkDir, name), "--unresolved-symbols=ignore-all", "--noinhibit-exec", "-e", "0", inside)
	if cmd.Err != nil {
		return "", nil, fmt.Errorf("prepare %s in the toolchain root for %s: %w", linker, object, cmd.Err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", nil, fmt.Errorf("link %s for symbolizing: %s: %w: %s", object, linker, err, strings.TrimSpace(stderr.String()))
	}
	linked = filepath.Join(dir, name)
	if _, err := os.Stat(linked); err != nil {
		return "", nil, fmt.Errorf("link %s for symbolizing: %s wrote no output: %w: %s", object, linker, err, strings.TrimSpace(stderr.String()))
	}
	return linked, remove, nil
}

// symbolizeOptions run llvm-addr2line on the host file object, bound read-only at inside
// (none when object is ""), with the root read-only.
func symbolizeOptions(object, inside string) images.RunOptions {
	opt := images.RunOptions{ReadOnlyRoot: true}
	if object != "" {
		opt.Binds = []images.Bind{{Host: object, Guest: inside, ReadOnly: true}}
	}
	return opt
}

// findObject is the host file holding module's debug information: vmlinux for module "",
// else the module's .ko in one of dirs.
func findObject(vmlinux string, dirs []string, module string) (string, error) {
	if module == "" {
		if vmlinux == "" {
			return "", fmt.Errorf("%w: the kernel was built without debug information; hint: remove kernel.debug: false from kmodvm.yaml (the debug kernel is the default) and recreate the VM (kmodvm destroy, then kmodvm up) for traces with file:line", ktrace.ErrNoLine)
		}
		if _, err := os.Stat(vmlinux); err != nil {
			return "", fmt.Errorf("the kernel's debug information: %w; hint: the kernel's cache entry is gone; recreate the VM (kmodvm destroy, then kmodvm up)", err)
		}
		return vmlinux, nil
	}
	want := modName(module)
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // not built on the host (yet)
		}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".ko")
			// A regular file only: the module's own Makefile made this directory, and a
			// symlink named x.ko could point anywhere on the host.
			if ok && e.Type().IsRegular() && modName(name) == want {
				return filepath.Join(dir, e.Name()), nil
			}
		}
	}
	return "", fmt.Errorf("%w: module %s has no .ko built on the host (a guest build keeps it in the guest)", ktrace.ErrNoLine, module)
}

// modName is a module's name as the kernel prints it: kbuild turns - into _.
func modName(s string) string { return strings.ReplaceAll(s, "-", "_") }
