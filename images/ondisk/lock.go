// Package ondisk holds the on-disk mechanics every kmodvm cache and state directory shares:
// an exclusive file lock, cache entries published atomically (with a sweep of what killed
// builders left behind), a tree copier, and a removal that refuses to descend into mounts.
package ondisk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockPoll is how often a waiting Lock retries; flock has no wait that ends with a context.
const lockPoll = 100 * time.Millisecond

// Lock takes an exclusive flock on path (created, with its directory, if missing), waiting
// until it is free or ctx ends. waiting, if not nil, is called once when the lock is held
// by someone else, before the wait begins. The lock ends with the process, however it dies.
func Lock(ctx context.Context, path string, waiting func()) (unlock func(), err error) {
	f, err := openLock(path)
	if err != nil {
		return nil, err
	}
	ok, err := tryFlock(f, path)
	if err != nil {
		return nil, err
	}
	if !ok {
		if waiting != nil {
			waiting()
		}
		tick := time.NewTicker(lockPoll)
		defer tick.Stop()
		for !ok {
			select {
			case <-ctx.Done():
				_ = f.Close()
				return nil, fmt.Errorf("wait for the lock %s, held by another kmodvm: %w", path, ctx.Err())
			case <-tick.C:
			}
			if ok, err = tryFlock(f, path); err != nil {
				return nil, err
			}
		}
	}
	return release(f), nil
}

// TryLock takes the lock on path if it is free; ok is false when someone else holds it.
func TryLock(path string) (unlock func(), ok bool, err error) {
	f, err := openLock(path)
	if err != nil {
		return nil, false, err
	}
	if ok, err = tryFlock(f, path); !ok || err != nil {
		return nil, false, err
	}
	return release(f), true, nil
}

func release(f *os.File) func() {
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }
}

func openLock(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create the directory of lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	return f, nil
}

// tryFlock reports whether it took the lock; on a real error it closes f.
func tryFlock(f *os.File, path string) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return false, nil
	default:
		_ = f.Close()
		return false, fmt.Errorf("lock %s: %w", path, err)
	}
}
