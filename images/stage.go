package images

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// A stage is a hardlinked copy of a root (cp -al): every file in it shares its inode with
// the root. Nothing here may write into an existing staged file: replace it (unlink, then
// create a new file). Guest paths are resolved inside the stage as if it were /, so an
// absolute symlink in the root never leads outside the stage.

// resolveIn maps the guest path p to a host path inside base, following symlinks the way
// the guest would (absolute targets are relative to base, ".." stops at base). Missing
// components are fine: the result is where they would be created.
func resolveIn(base, p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("guest path %q is not absolute", p)
	}
	rest := strings.Split(p, "/")
	cur := "/"
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, c)
		fi, err := os.Lstat(filepath.Join(base, next))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				return "", err
			}
			cur = next
			continue
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("guest path %q: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(base, next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(base, cur), nil
}

// mkdirStaged creates the guest directory p (and its parents) in the stage. Directories
// of a stage are its own (cp -al copies them), so setting the mode of an existing one is safe.
func mkdirStaged(stage, p string, perm os.FileMode) (string, error) {
	host, err := resolveIn(stage, p)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(host, 0o755); err != nil {
		return "", fmt.Errorf("create %s in the disk: %w", p, err)
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("create %s in the disk: it exists and is not a directory", p)
	}
	if err := os.Chmod(host, perm); err != nil {
		return "", fmt.Errorf("create %s in the disk: %w", p, err)
	}
	return host, nil
}

// writeStaged puts a new file with data and perm at the guest path p: whatever was there
// (a hardlink shared with the root) is unlinked first, never written to.
func writeStaged(stage, p string, data []byte, perm os.FileMode) error {
	dir, err := mkdirParent(stage, p)
	if err != nil {
		return err
	}
	host := filepath.Join(dir, path.Base(p))
	if err := unlinkStaged(host); err != nil {
		return fmt.Errorf("write %s in the disk: %w", p, err)
	}
	f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s in the disk: %w", p, err)
	}
	_, werr := f.Write(data)
	cerr := f.Chmod(perm) // the umask may have narrowed it; the file is ours
	if err := errors.Join(werr, cerr, f.Close()); err != nil {
		return fmt.Errorf("write %s in the disk: %w", p, err)
	}
	return nil
}

// symlinkStaged replaces the guest path p with a symlink to target.
func symlinkStaged(stage, p, target string) error {
	dir, err := mkdirParent(stage, p)
	if err != nil {
		return err
	}
	host := filepath.Join(dir, path.Base(p))
	if err := unlinkStaged(host); err != nil {
		return fmt.Errorf("link %s in the disk: %w", p, err)
	}
	if err := os.Symlink(target, host); err != nil {
		return fmt.Errorf("link %s in the disk: %w", p, err)
	}
	return nil
}

// mkdirParent creates the parent of guest path p (following symlinks inside the stage) and
// returns its host path; p's last component itself is not resolved.
func mkdirParent(stage, p string) (string, error) {
	clean := path.Clean(p)
	if !path.IsAbs(clean) || clean == "/" {
		return "", fmt.Errorf("guest path %q is not an absolute file path", p)
	}
	dir, err := resolveIn(stage, path.Dir(clean))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s in the disk: %w", path.Dir(clean), err)
	}
	return dir, nil
}

// unlinkStaged removes a non-directory at host, if any.
func unlinkStaged(host string) error {
	fi, err := os.Lstat(host)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", host)
	}
	return os.Remove(host)
}

// removeStaged unlinks the files matching the guest glob pattern (only the stage's links go;
// the root keeps its files).
func removeStaged(stage, pattern string) ([]string, error) {
	dir, err := resolveIn(stage, path.Dir(pattern))
	if err != nil {
		return nil, err
	}
	matches, err := filepath.Glob(filepath.Join(dir, path.Base(pattern)))
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, m := range matches {
		if err := unlinkStaged(m); err != nil {
			return removed, fmt.Errorf("remove %s from the disk: %w", m, err)
		}
		removed = append(removed, path.Join(path.Dir(pattern), filepath.Base(m)))
	}
	return removed, nil
}

// contentSize estimates the space the tree under dir takes in ext4: 4 KiB blocks and a
// 256-byte inode per file, each hardlinked inode once.
func contentSize(dir string) (int64, error) {
	type ino struct{ dev, ino uint64 }
	seen := map[ino]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil && errors.Is(err, fs.ErrPermission) && d != nil && d.IsDir() {
			// A directory of a subordinate id in an ordinary user's stage (apt's partial/):
			// counted already (the first call), and it holds nothing of size in a fresh root.
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 && !fi.IsDir() {
			k := ino{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += (fi.Size()+4095)/4096*4096 + 256 // data blocks + an ext4 inode
		return nil
	})
	return total, err
}

const gib = int64(1) << 30

// autoSizeGiB is the disk size for content bytes: twice the content (room for module builds
// and logs), at least 8 GiB. The image is sparse: unused space costs nothing.
func autoSizeGiB(content int64) int {
	n := int((2*content + gib - 1) / gib)
	return max(n, 8)
}
