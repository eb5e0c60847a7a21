package rustproject

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/vm/shellquote"
)

// The root's dynamic loader and the directory of its libraries (Debian's multiarch one:
// librustc_driver, LLVM, the C library).
const (
	rootLoader = "lib64/ld-linux-x86-64.so.2"
	rootLibs   = "usr/lib/x86_64-linux-gnu"
)

// sysrootTools are the programs of the root's sysroot (its /usr) rust-analyzer runs: rustc
// for the target's cfgs and data layout, and the proc-macro server that expands the
// kernel's procedural macros (module!, #[pin_data], #[vtable]) with the libraries the
// kernel's build made, which only a server of the same toolchain can load.
var sysrootTools = []string{"bin/rustc", "libexec/rust-analyzer-proc-macro-srv"}

// HostSysroot makes dir a sysroot of the toolchain root rootDir that works on this host:
// lib is the root's /usr/lib (with rustlib/src/rust/library, the sources of core, alloc and
// std), and bin/rustc and libexec/rust-analyzer-proc-macro-srv are scripts that run the
// root's own through the root's dynamic loader and libraries. The root's /usr as the
// sysroot would not do: rust-analyzer would run its programs as they are, and they need
// the root's C library and librustc_driver, which the host lacks (sid's glibc is newer than
// any stable distribution's), so rust-analyzer would stop, or expand no macro. Making dir
// again replaces what is there; then HostSysroot runs its rustc once, to fail now rather
// than in the editor.
func HostSysroot(ctx context.Context, rootDir, dir string) error {
	if _, err := os.Stat(filepath.Join(rootDir, rootLoader)); err != nil {
		return fmt.Errorf("make a sysroot for this host: the toolchain root has no dynamic loader: %w", err)
	}
	for _, t := range sysrootTools {
		prog := filepath.Join(rootDir, "usr", t)
		if _, err := os.Stat(prog); err != nil {
			return fmt.Errorf("make a sysroot for this host: the toolchain root lacks %s: %w; hint: its rustc package brings it; rebuild the image (kmodvm image build)", "/usr/"+t, err)
		}
		script := "#!/bin/sh\n# kmodvm ide: the toolchain root's " + filepath.Base(t) + ", run on this host with the root's own libraries.\nexec " +
			shellquote.Join(HostArgv(rootDir, prog)...) + ` "$@"` + "\n"
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(t)), 0o755); err != nil {
			return err
		}
		if err := ondisk.WriteFileAtomic(filepath.Join(dir, t), []byte(script), 0o755); err != nil {
			return fmt.Errorf("make a sysroot for this host: %w", err)
		}
	}
	if err := ondisk.Symlink(filepath.Join(rootDir, "usr/lib"), filepath.Join(dir, "lib")); err != nil {
		return fmt.Errorf("make a sysroot for this host: %w", err)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "bin/rustc"), "--print", "sysroot")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the toolchain root's rustc does not run on this host through %s: %w\n%s", filepath.Join(dir, "bin/rustc"), err, indent(lastLines(out.String(), 5)))
	}
	if got, want := strings.TrimSpace(out.String()), filepath.Join(rootDir, "usr"); !samePath(got, want) {
		return fmt.Errorf("the toolchain root's rustc, run on this host through %s, says its sysroot is %q, not %s", filepath.Join(dir, "bin/rustc"), got, want)
	}
	return nil
}

// HostArgv is the command line that runs prog, a program of the toolchain root rootDir
// (its path on this host), on this host, with args: through the root's dynamic loader,
// with the root's libraries, as the host's own may be too old for it.
func HostArgv(rootDir, prog string, args ...string) []string {
	return append([]string{filepath.Join(rootDir, rootLoader), "--library-path", filepath.Join(rootDir, rootLibs), prog}, args...)
}

// samePath says whether a and b name the same directory, through symlinks.
func samePath(a, b string) bool {
	if a == b {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}
