package kernel

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// buildingMarker is in a build tree while something writes build outputs into it. A build
// stopped the way a terminal stops it (SIGINT, see images.InterruptOnCancel) lets make
// delete its half-written targets and removes the marker; one that could not clean up
// (kmodvm or make SIGKILLed, a power loss) leaves it, and the next build in the tree
// removes what may be half-written before make trusts it.
const buildingMarker = ".kmodvm-building"

// errKilled marks a make that was killed without a chance to clean up.
var errKilled = errors.New("make was killed before it could clean up")

// whileBuilding runs fn with the in-progress marker in tree. The marker stays when fn's make
// was killed.
func whileBuilding(tree string, fn func() error) error {
	marker := filepath.Join(tree, buildingMarker)
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		return fmt.Errorf("mark the kernel tree as being built: %w", err)
	}
	err := fn()
	if errors.Is(err, errKilled) {
		return err
	}
	if rerr := os.Remove(marker); rerr != nil {
		return errors.Join(err, fmt.Errorf("unmark the kernel tree: %w", rerr))
	}
	return err
}

// recoverInterrupted finishes what a build stopped without cleaning up left in tree: every
// file written since its marker may be half-written, and make would trust it for its fresh
// mtime (a 0-byte rust/uapi/uapi_generated.rs broke every later build). They are removed, so
// make rebuilds them; outputs older than the marker are complete and kept, and so is
// kmodvm's own bookkeeping. Sources are kept in a tree unpacked from a package or tarball
// (it is never unpacked again); in a mirror of a local tree, a "source" written since the
// marker was written by the build (a local tree built in place has generated files among
// its sources) and the mirror that follows copies it again. Kconfig's own outputs are kept
// too (see writtenWhole): removing include/config/auto.conf made the next make rebuild the
// whole kernel, 9 minutes on 2 cores, where the change itself needed one.
func (b *Builder) recoverInterrupted(tree string) error {
	marker := filepath.Join(tree, buildingMarker)
	st, err := os.Stat(marker)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	since := st.ModTime()
	sources := map[string]bool{}
	if _, err := os.Stat(filepath.Join(tree, unpackedMarker)); err == nil {
		sources = readManifest(tree)
	}
	var removed []string
	err = filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		if d.IsDir() {
			if rel == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || sources[rel] || strings.HasPrefix(rel, ".kmodvm-") || writtenWhole(rel) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.ModTime().Before(since) {
			return nil
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		removed = append(removed, rel)
		return nil
	})
	if err != nil {
		return fmt.Errorf("clean up after an interrupted kernel build in %s: %w; hint: remove %s to start that tree afresh", tree, err, tree)
	}
	b.logger().Info("removed what an interrupted kernel build may have left half-written", "tree", tree, "files", len(removed))
	files := "files"
	if len(removed) == 1 {
		files = "file"
	}
	b.report(Progress{Phase: "recover", Current: fmt.Sprintf("an earlier build in this kernel tree was stopped before it could clean up; removed %d %s it may have left half-written%s, make rebuilds them", len(removed), files, examples(removed))})
	return os.Remove(marker)
}

// writtenWhole reports whether rel is one of the files Kconfig's syncconfig writes, which
// are never half-written: auto.conf, auto.conf.cmd, autoconf.h and rustc_cfg are written to a
// temporary file and renamed into place (scripts/kconfig/confdata.c), and each
// include/config/<SYMBOL> is an empty file that only its mtime matters for. Removing them is
// what costs: with no auto.conf, syncconfig touches every symbol's file and every object is
// rebuilt. A leftover temporary file (*.tmp) is not kept.
func writtenWhole(rel string) bool {
	rel = filepath.ToSlash(rel)
	if strings.HasSuffix(rel, ".tmp") {
		return false
	}
	return strings.HasPrefix(rel, "include/config/") || rel == "include/generated/autoconf.h" || rel == "include/generated/rustc_cfg"
}

// examples names the first few of files, for a progress line.
func examples(files []string) string {
	if len(files) == 0 {
		return ""
	}
	n := min(len(files), 3)
	s := " (" + strings.Join(files[:n], ", ")
	if len(files) > n {
		s += ", ..."
	}
	return s + ")"
}
