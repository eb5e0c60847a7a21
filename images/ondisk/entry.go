package ondisk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// BuildFunc fills the temporary entry directory tmp. failedLog is where tmp/build.log is
// kept when the build fails, so error messages can point at it.
type BuildFunc func(tmp, failedLog string) error

// LogName is the build log inside an entry; a failed build's is kept as <key>.failed.log.
const LogName = "build.log"

const tmpPrefix = ".tmp-"

// Entry returns parent/key, building it with build first when it does not exist. The entry
// is built in parent/.tmp-<key>-* and renamed into place only when build succeeds: an
// interrupted or failed build leaves no entry (its log is kept as parent/<key>.failed.log
// unless the context was cancelled). parent/<key>.lock serializes builds of one key across
// processes. Before building, temporary directories left by builders that died (SIGKILL,
// power loss) are swept: those whose key's lock nobody holds.
func Entry(ctx context.Context, log *slog.Logger, parent, key string, build BuildFunc) (dir string, hit bool, err error) {
	final := filepath.Join(parent, key)
	if isDir(final) {
		return final, true, nil
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", false, fmt.Errorf("create cache directory: %w", err)
	}
	unlock, err := Lock(ctx, lockPath(parent, key), func() {
		log.Info("waiting for another kmodvm building the same cache entry", "entry", final)
	})
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if isDir(final) { // built by another process while we waited for the lock
		return final, true, nil
	}
	if err := sweepStale(log, parent, key); err != nil {
		return "", false, err
	}
	tmp, err := os.MkdirTemp(parent, tmpPrefix+key+"-")
	if err != nil {
		return "", false, fmt.Errorf("create cache entry: %w", err)
	}
	failedLog := filepath.Join(parent, key+".failed.log")
	if err := build(tmp, failedLog); err != nil {
		if ctx.Err() == nil {
			_ = os.Rename(filepath.Join(tmp, LogName), failedLog)
		}
		if rerr := RemoveTree(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up partial cache entry: %w", rerr))
		}
		return "", false, err
	}
	if err := ctx.Err(); err != nil { // interrupted after the last step: keep nothing all the same
		_ = RemoveTree(tmp)
		return "", false, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes 0700; libvirt's qemu user must traverse it
		_ = RemoveTree(tmp)
		return "", false, fmt.Errorf("finish cache entry: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = RemoveTree(tmp)
		return "", false, fmt.Errorf("finish cache entry: %w", err)
	}
	_ = os.Remove(failedLog)
	return final, false, nil
}

func lockPath(parent, key string) string { return filepath.Join(parent, key+".lock") }

// sweepStale removes parent's temporary entries whose builder is gone. Those of key are
// stale for sure (the caller holds key's lock) and must go; another key's are stale when its
// lock is free (a live builder holds it) and are removed if they can be: one that cannot
// (a mount left inside) is logged, and must not stop this build.
func sweepStale(log *slog.Logger, parent, key string) error {
	tmps, err := filepath.Glob(filepath.Join(parent, tmpPrefix+"*"))
	if err != nil {
		return err
	}
	for _, t := range tmps {
		k, ok := tmpKey(filepath.Base(t))
		if !ok || !isDir(t) {
			continue
		}
		if k == key {
			if err := removeStale(log, t); err != nil {
				return err
			}
			continue
		}
		if err := removeIfUnlocked(log, lockPath(parent, k), t); err != nil {
			log.Warn("cannot remove a partial cache entry left by an interrupted build", "dir", t, "err", err)
		}
	}
	return nil
}

// removeIfUnlocked removes dir when nobody holds the lock at lockFile. A builder creates its
// lock before its temporary directory, so without a lock file there is no builder.
func removeIfUnlocked(log *slog.Logger, lockFile, dir string) error {
	if _, err := os.Stat(lockFile); errors.Is(err, os.ErrNotExist) {
		return removeStale(log, dir)
	}
	unlock, free, err := TryLock(lockFile)
	if err != nil || !free {
		return err
	}
	defer unlock()
	return removeStale(log, dir)
}

func removeStale(log *slog.Logger, dir string) error {
	log.Info("removing a partial cache entry left by an interrupted build", "dir", dir)
	if err := RemoveTree(dir); err != nil {
		return fmt.Errorf("remove stale partial cache entry: %w", err)
	}
	return nil
}

// tmpKey extracts the key from ".tmp-<key>-<random>" (MkdirTemp's random part has no dash).
func tmpKey(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, tmpPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndexByte(rest, '-')
	if i <= 0 {
		return "", false
	}
	return rest[:i], true
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
