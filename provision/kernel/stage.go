package kernel

import (
	"context"
	"errors"
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

// rustSourceDirs are the directories of a kernel tree whose Rust sources StageRustSources
// keeps: the crates of rust/ (with the generated bindings) and the host programs of scripts/,
// which is every crate root `make rust-analyzer` names for an out-of-tree module.
var rustSourceDirs = []string{"rust", "scripts"}

// StageRustSources copies the Rust sources (*.rs) of a built kernel tree's rust/ and scripts/
// directories into dst, in tree layout: the crate roots and include!d generated files an
// editor's rust-analyzer reads (kmodvm ide), which the staged build tree leaves out. It runs
// when the entry is made, while the tree holds exactly this kernel's patches and generated
// bindings: the tree is shared by every variant, so reading it later could give another
// kernel's sources. A directory the tree lacks is left out. It stops when ctx ends.
func StageRustSources(ctx context.Context, tree, dst string) error {
	for _, d := range rustSourceDirs {
		_, err := ondisk.CopyTree(ctx, filepath.Join(tree, d), filepath.Join(dst, d), ondisk.CopyOptions{
			Skip: func(_ string, e fs.DirEntry) bool { return !e.IsDir() && !strings.HasSuffix(e.Name(), ".rs") },
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
