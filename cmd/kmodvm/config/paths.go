package config

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Paths are the directories kmodvm keeps its files in.
type Paths struct {
	State string // VMs: disk overlays, keys, console logs
	Cache string // things that can be rebuilt: images, kernels, downloads
}

// ResolvePaths finds the state and cache directories. KMODVM_HOME=X gives X/state and X/cache;
// otherwise $XDG_STATE_HOME/kmodvm (default home/.local/state/kmodvm) and
// $XDG_CACHE_HOME/kmodvm (default home/.cache/kmodvm). As the XDG spec says, a relative XDG
// variable is ignored; a relative KMODVM_HOME, or a home that is needed and not absolute, is an
// error. getenv is os.Getenv outside tests; home is the user's home directory.
func ResolvePaths(getenv func(string) string, home string) (Paths, error) {
	if h := getenv("KMODVM_HOME"); h != "" {
		if !filepath.IsAbs(h) {
			return Paths{}, fmt.Errorf("KMODVM_HOME=%q is not an absolute path; hint: set KMODVM_HOME to a full path such as /var/tmp/kmodvm, or unset it", h)
		}
		h = filepath.Clean(h)
		return Paths{State: filepath.Join(h, "state"), Cache: filepath.Join(h, "cache")}, nil
	}
	dir := func(env, fallback string) (string, error) {
		if v := getenv(env); filepath.IsAbs(v) {
			return filepath.Join(v, "kmodvm"), nil
		}
		if !filepath.IsAbs(home) {
			return "", fmt.Errorf("cannot place kmodvm's files: the home directory %q is not an absolute path and %s is not set; hint: set KMODVM_HOME to a full path", home, env)
		}
		return filepath.Join(home, fallback, "kmodvm"), nil
	}
	state, err := dir("XDG_STATE_HOME", filepath.Join(".local", "state"))
	if err != nil {
		return Paths{}, err
	}
	cache, err := dir("XDG_CACHE_HOME", ".cache")
	if err != nil {
		return Paths{}, err
	}
	return Paths{State: state, Cache: cache}, nil
}

// EnsurePrivate makes the state and cache directories exist, belong to the user and be
// reachable by nobody else (0700): they hold the guest's SSH keys and the disks holding its
// host key, and a root another user could write would run their code in our builds. A
// directory of someone else is an error, never silently shared.
func EnsurePrivate(p Paths) error {
	for _, dir := range []string{p.State, p.Cache} {
		if err := ensurePrivate(dir, os.Getuid()); err != nil {
			return err
		}
	}
	return nil
}

func ensurePrivate(dir string, uid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w; hint: set KMODVM_HOME to a directory you can write", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", dir, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != uid {
		return fmt.Errorf("%s belongs to uid %d, not to you (uid %d): kmodvm keeps private keys there and shares it with nobody; hint: set KMODVM_HOME to a directory of yours, e.g. KMODVM_HOME=$HOME/kmodvm", dir, st.Uid, uid)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("make %s private (0700): %w", dir, err)
		}
	}
	return nil
}
