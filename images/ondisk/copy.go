package ondisk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// CopyOptions say what CopyTree copies.
type CopyOptions struct {
	// Skip reports whether rel (relative to the source, with the OS separator) is left out;
	// for a directory, with everything below it. Nil copies everything.
	Skip func(rel string, d fs.DirEntry) bool
	// SkipUnchanged leaves files alone whose size, mode and mtime already match (an
	// incremental mirror); otherwise every file is copied.
	SkipUnchanged bool
}

// CopyTree copies the tree src into dst: regular files with their mode and mtime, symlinks
// as symlinks; other files (sockets, devices) are left out. Directories are created as
// their first file needs them (mode 0755): empty ones are not copied.
// A file is written under a temporary name and renamed over the destination, so a file
// already there is replaced, never written into (it may be a hardlink shared with a root),
// and an interrupted copy leaves no half-written file under a real name. It returns the
// relative paths of the files and links dst now mirrors, in lexical order, and stops when
// ctx ends.
func CopyTree(ctx context.Context, src, dst string, opt CopyOptions) ([]string, error) {
	var kept []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel != "." && opt.Skip != nil && opt.Skip(rel, d) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		out := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			kept = append(kept, rel)
			return copySymlink(p, out)
		case d.Type().IsRegular():
			kept = append(kept, rel)
			if opt.SkipUnchanged && sameFile(p, out) {
				return nil
			}
			return CopyFile(p, out)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return kept, nil
}

func copySymlink(src, dst string) error {
	target, err := os.Readlink(src)
	if err != nil {
		return err
	}
	return Symlink(target, dst)
}

// Symlink makes dst a symlink to target, through a temporary name renamed over dst: what
// dst was is replaced, and a reader sees it or the link. dst's directory is created if
// missing; a link to target already there is left alone.
func Symlink(target, dst string) error {
	if old, err := os.Readlink(dst); err == nil && old == target {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := dst + ".kmodvm-tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

func sameFile(src, dst string) bool {
	s, err := os.Lstat(src)
	if err != nil {
		return false
	}
	d, err := os.Lstat(dst)
	return err == nil && d.Mode() == s.Mode() && d.Size() == s.Size() && d.ModTime().Equal(s.ModTime())
}

// CopyFile copies the regular file src to dst with its mode and mtime, through a temporary
// name renamed over dst. dst's directory is created if missing.
func CopyFile(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".kmodvm-tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return err
	}
	_, werr := io.Copy(out, in)
	cerr := out.Chmod(fi.Mode().Perm()) // the umask may have narrowed the mode
	err = errors.Join(werr, cerr, out.Close())
	if err == nil {
		err = os.Chtimes(tmp, fi.ModTime(), fi.ModTime())
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, dst)
}

// WriteFileAtomic writes data to path through a temporary file renamed into place, so a
// reader sees the old content or the new, never a part.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Chmod(mode)
	if err := errors.Join(werr, cerr, tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
