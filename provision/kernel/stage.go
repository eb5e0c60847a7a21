package kernel

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
)

// StageKDir copies from a built kernel tree what an out-of-tree module build reads (in the
// style of a distro's linux-headers, plus the Rust metadata those lack): the headers outside drivers/, the
// Makefiles and Kconfig files, scripts/ with its built host tools, include/ (generated
// headers and config), .config, Module.symvers, objtool, and from rust/ the .rmeta files
// and proc-macro libraries. Sources, objects and the vmlinux are left out. The result is a
// tree in in-tree layout that `make -C DST M=...` builds against, producing the same .ko as
// the full tree. It stops when ctx ends.
func StageKDir(ctx context.Context, tree, dst string) error {
	if _, err := os.Stat(filepath.Join(tree, "Module.symvers")); err != nil {
		return fmt.Errorf("%s has no Module.symvers: the kernel build did not finish", tree)
	}
	_, err := ondisk.CopyTree(ctx, tree, dst, ondisk.CopyOptions{Skip: func(rel string, d fs.DirEntry) bool {
		if d.IsDir() {
			return skipDir(rel)
		}
		return !keepFile(rel)
	}})
	if err != nil {
		return err
	}
	// kbuild would run syncconfig if .config looked newer than auto.conf.
	now := time.Now()
	return os.Chtimes(filepath.Join(dst, "include/config/auto.conf"), now, now)
}

func skipDir(rel string) bool {
	switch rel {
	case ".git", "Documentation", "LICENSES", "usr", "samples", "virt", "sound", "certs":
		return true
	}
	// From tools/ only objtool's binary is needed.
	return strings.HasPrefix(rel, "tools/") && rel != "tools/objtool"
}

func keepFile(rel string) bool {
	base := filepath.Base(rel)
	dir := filepath.Dir(rel)
	switch rel {
	case ".config", "Module.symvers", "tools/objtool/objtool":
		return true
	}
	if strings.HasPrefix(rel, "tools/") {
		return false
	}
	if strings.HasSuffix(base, ".o") || strings.HasSuffix(base, ".cmd") || strings.HasPrefix(base, ".tmp") {
		return false
	}
	switch {
	case strings.HasPrefix(rel, "scripts/"), strings.HasPrefix(rel, "include/"), strings.HasPrefix(rel, "arch/x86/include/"):
		return true
	case dir == "rust":
		return strings.HasSuffix(base, ".rmeta") || (strings.HasPrefix(base, "lib") && strings.HasSuffix(base, ".so")) || base == "Makefile"
	case strings.HasSuffix(base, ".h"):
		// Like a distro's linux-headers: drivers' private headers (hundreds of MB of GPU
		// and NIC register dumps) are not an out-of-tree module's business.
		return !strings.HasPrefix(rel, "drivers/")
	case strings.HasPrefix(base, "Makefile"), strings.HasPrefix(base, "Kbuild"), strings.HasPrefix(base, "Kconfig"):
		return true
	}
	return false
}

// StageSources copies from a built kernel tree into dst, at their paths in the tree, the
// sources of the Rust crates a module is built against that the rest of a cache entry does
// not keep: pin-init, macros, zerocopy, ffi and the like. rustc's diagnostics about a
// module point into them ("--> rust/pin-init/src/macros.rs:976:9"), and kmodvm points
// those at the host (Result.SourceDirs). The kernel crate's sources and the generated
// bindings are kept with the bindings index (bindindex.Stage); the host libraries the
// macros crates are built with (syn, quote, proc-macro2) are left out. It stops when ctx
// ends.
func StageSources(ctx context.Context, tree, dst string) error {
	_, err := ondisk.CopyTree(ctx, filepath.Join(tree, "rust"), filepath.Join(dst, "rust"), ondisk.CopyOptions{Skip: func(rel string, d fs.DirEntry) bool {
		if d.IsDir() {
			return !keepSourceDir(filepath.ToSlash(rel))
		}
		return !d.Type().IsRegular() || !strings.HasSuffix(rel, ".rs") || strings.HasSuffix(rel, "_generated.rs")
	}})
	if err != nil {
		return fmt.Errorf("keep the Rust crates' sources: %w", err)
	}
	return nil
}

// keepSourceDir says whether StageSources walks rust/<rel>.
func keepSourceDir(rel string) bool {
	switch strings.Split(rel, "/")[0] {
	case "kernel", "syn", "quote", "proc-macro2":
		return false
	}
	return true
}
