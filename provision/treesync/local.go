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

// loadMatcher builds the ignore rules for the tree at root: built-in
// rules, then root/.kmodvmignore, then extra.
func loadMatcher(root string, extra []string) (*Matcher, error) {
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
		if reserved(rel) {
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

// checkLink refuses a symlink whose target leaves the tree, judged both on
// the text of the link and, when the target exists, on where it really
// resolves.
func checkLink(root, rel, target string) error {
	refuse := &TreeError{Msg: fmt.Sprintf("sync: symlink %s -> %s points outside the module directory; hint: copy the file into the module directory or add it to %s", rel, target, IgnoreFile)}
	if target == "" || filepath.IsAbs(target) || strings.ContainsRune(target, 0) {
		return refuse
	}
	joined := path.Join(path.Dir(rel), filepath.ToSlash(target))
	if joined == ".." || strings.HasPrefix(joined, "../") {
		return refuse
	}
	real, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		return nil // dangling (or a loop): the text check above is all there is
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return refuse
	}
	return nil
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
