package sandbox

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
)

// maxPristineSaves is how many pristine saves the cache keeps. Each is about the guest's
// memory plus its booted overlay, and each belongs to one VM name (its UUID), so VMs made
// and thrown away (a CI job's, a test's) would otherwise leave theirs behind for good.
const maxPristineSaves = 4

// pristineEntry is one pristine save in the cache, as prunePristine sees it.
type pristineEntry struct {
	dir  string
	vm   string
	used time.Time // the last time it was made or restored: save.json's mtime
}

// listPristine lists the complete pristine saves under parent; an entry whose key file is
// missing or unreadable (one being made, or a broken one) is left out.
func listPristine(parent string) []pristineEntry {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var out []pristineEntry
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		meta := filepath.Join(dir, metaFile)
		m, err := readMeta(meta)
		if err != nil {
			continue
		}
		fi, err := os.Stat(meta)
		if err != nil {
			continue
		}
		out = append(out, pristineEntry{dir: dir, vm: m.VM, used: fi.ModTime()})
	}
	return out
}

// prunePristine runs after VM vmName got the pristine save keep: it removes that VM's other
// pristine saves (made for a kernel, image or machine it no longer has: never restored
// again), then the least recently used saves beyond maxPristineSaves. A save whose entry is
// locked (being made) stays. It returns the directories removed.
func prunePristine(log *slog.Logger, parent, keep, vmName string) []string {
	all := listPristine(parent)
	slices.SortFunc(all, func(a, b pristineEntry) int { return b.used.Compare(a.used) }) // newest first
	var removed []string
	kept := 1 // keep
	for _, e := range all {
		if e.dir == keep {
			continue
		}
		if e.vm != vmName && kept < maxPristineSaves {
			kept++
			continue
		}
		if removePristine(log, parent, e) {
			removed = append(removed, e.dir)
		} else {
			kept++
		}
	}
	return removed
}

// removePristine removes the save e unless its entry is locked (being made); it says
// whether it did. The lock file stays, as every cache entry's does: removing it could let
// two makers lock two different files of one name.
func removePristine(log *slog.Logger, parent string, e pristineEntry) bool {
	unlock, ok, err := ondisk.TryLock(filepath.Join(parent, filepath.Base(e.dir)+".lock"))
	if err != nil || !ok {
		return false
	}
	defer unlock()
	// Out of sight first (a rename is atomic), so no one finds half a save.
	gone := filepath.Join(parent, ".tmp-"+filepath.Base(e.dir)+"-pruned")
	if err := os.Rename(e.dir, gone); err != nil {
		log.Warn("cannot remove a pristine save", "dir", e.dir, "err", err)
		return false
	}
	if err := ondisk.RemoveTree(gone); err != nil {
		log.Warn("cannot remove a pristine save", "dir", e.dir, "err", err)
		return false
	}
	log.Info("removed a pristine save", "dir", e.dir, "vm", e.vm)
	return true
}

// touchPristine marks the pristine save dir as used now (prunePristine keeps the most
// recently used).
func touchPristine(dir string) {
	now := time.Now()
	_ = os.Chtimes(filepath.Join(dir, metaFile), now, now)
}
