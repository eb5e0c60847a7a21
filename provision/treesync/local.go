package treesync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// LoadMatcher builds the ignore rules for the tree at root: built-in
// rules, then root/.kmodvmignore, then extra.
func LoadMatcher(root string, extra []string) (*Matcher, error) {
	m, err := NewMatcher("options", nil)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(root, IgnoreFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("sync: read ignore file: %w", err)
	default:
		if err := m.add(filepath.Join(root, IgnoreFile), parseIgnoreFile(data)); err != nil {
			return nil, err
		}
	}
	if err := m.add("ignore option", extra); err != nil {
		return nil, err
	}
	return m, nil
}

// walkLocal lists the tree at root (already free of symlinks), leaving out
// ignored entries. Special files are skipped with a warning; a symlink
// pointing outside the tree is an error.
func walkLocal(ctx context.Context, root string, m *Matcher, log *slog.Logger) ([]Entry, error) {
	var entries []Entry
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("sync: list local tree: %w", err)
		}
		if p == root {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		relOS, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("sync: list local tree: %w", err)
		}
		rel := filepath.ToSlash(relOS)
		if Reserved(rel) {
			log.Warn("sync: skipping local file with a name the sync reserves for itself", "path", rel)
			return nil
		}
		if m.Ignored(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("sync: list local tree: %w", err)
		}
		e := Entry{Path: rel, Mode: info.Mode().Perm(), Mtime: info.ModTime().UnixNano()}
		switch t := info.Mode().Type(); {
		case t == 0:
			e.Kind, e.Size = File, info.Size()
		case t == fs.ModeDir:
			e.Kind, e.Mtime = Dir, 0
		case t == fs.ModeSymlink:
			e.Kind, e.Mtime = Symlink, 0
			if e.Link, err = os.Readlink(p); err != nil {
				return fmt.Errorf("sync: list local tree: %w", err)
			}
			if err := checkLink(root, rel, e.Link); err != nil {
				return err
			}
		default:
			log.Warn("sync: skipping special file (device, socket or fifo)", "path", rel, "mode", info.Mode().String())
			return nil
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// checkLink refuses a symlink whose target leaves the tree, judged on where it
// resolves with the tree's own symlinks followed: the guest's copy has the same
// links, so a link that stays inside only as text (s -> . and then
// l -> s/s/../../etc/x) is refused too, even when its target exists nowhere on
// the host.
func checkLink(root, rel, target string) error {
	refuse := &TreeError{Msg: fmt.Sprintf("sync: symlink %s -> %s points outside the module directory; hint: copy the file into the module directory or add it to %s", rel, target, IgnoreFile)}
	if target == "" || filepath.IsAbs(target) || strings.ContainsRune(target, 0) {
		return refuse
	}
	if !staysInTree(root, path.Dir(rel), filepath.ToSlash(target)) {
		return refuse
	}
	real, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return nil // dangling (or a loop): staysInTree has judged it
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return refuse
	}
	return nil
}

// maxLinkHops bounds how many symlinks staysInTree follows, like the kernel's
// limit of 40 (a loop is then judged as leaving the tree).
const maxLinkHops = 40

// staysInTree resolves target, a relative link text found in directory dir
// (both slash-separated, relative to root), one component at a time: ".." goes
// up, a component that is a symlink in the tree is replaced by its text, a
// component that does not exist is taken as it is. It reports whether the
// walk never leaves root.
func staysInTree(root, dir, target string) bool {
	var cur []string // resolved components below root
	if dir != "." {
		cur = strings.Split(dir, "/")
	}
	todo := strings.Split(target, "/")
	hops := 0
	for len(todo) > 0 {
		el := todo[0]
		todo = todo[1:]
		switch el {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return false
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cur = append(cur, el)
		link, err := os.Readlink(filepath.Join(root, filepath.FromSlash(strings.Join(cur, "/"))))
		if err != nil {
			continue // not a symlink, or not there: a plain component
		}
		if hops++; hops > maxLinkHops || link == "" || path.IsAbs(filepath.ToSlash(link)) {
			return false
		}
		cur = cur[:len(cur)-1]
		todo = append(strings.Split(filepath.ToSlash(link), "/"), todo...)
	}
	return true
}

// hashLocal returns the hex SHA-256 of a local file.
func hashLocal(p string) (string, error) { return hashOf(os.Open(p)) }

// hashOf returns the hex SHA-256 of what f reads, and closes it.
func hashOf(f io.ReadCloser, err error) (string, error) {
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
