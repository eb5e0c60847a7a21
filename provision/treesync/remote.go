package treesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/pkg/sftp"
)

// maxManifestSize bounds what readManifest reads (a 100 000-file tree
// makes a manifest of about 15 MB).
const maxManifestSize = 256 << 20

// listRemote lists the target directory recursively without following
// symlinks. Ignored entries are returned flagged and not descended into;
// the manifest is left out. exists is false when target does not exist.
func listRemote(ctx context.Context, c *sftp.Client, target string, m *Matcher) (entries []Entry, exists bool, err error) {
	fi, err := c.Lstat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("sync: stat remote target %s: %w", target, err)
	}
	if fi.Mode().Type() == fs.ModeSymlink {
		// Writing through it would put the tree wherever it points.
		return nil, false, fmt.Errorf("sync: remote target %s is a symlink, and the sync never writes through one; hint: remove it in the guest", target)
	}
	if !fi.IsDir() {
		return nil, false, fmt.Errorf("sync: remote target %s exists and is not a directory; hint: remove it in the guest or choose another target", target)
	}
	var walk func(rel string) error
	walk = func(rel string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		dir := target
		if rel != "" {
			if dir, err = RemotePath(target, rel); err != nil {
				return err
			}
		}
		infos, err := c.ReadDirContext(ctx, dir)
		if err != nil {
			return fmt.Errorf("sync: list remote directory %s: %w", dir, err)
		}
		sort.Slice(infos, func(i, j int) bool { return infos[i].Name() < infos[j].Name() })
		for _, fi := range infos {
			name := fi.Name()
			if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
				return fmt.Errorf("sync: remote directory %s lists an invalid name %q", dir, name)
			}
			childRel := path.Join(rel, name)
			if childRel == ManifestName {
				continue
			}
			e := Entry{Path: childRel, Kind: kindOf(fi.Mode()), Size: fi.Size(), Mtime: fi.ModTime().UnixNano(), Mode: fi.Mode().Perm()}
			if e.Kind != File {
				e.Size = 0
			}
			if e.Kind == Dir || e.Kind == Symlink {
				e.Mtime = 0
			}
			switch {
			case isTempName(name):
				// Removed by Plan; never descended into.
			case m.Ignored(childRel, e.Kind == Dir):
				e.Ignored = true
			case e.Kind == Symlink:
				p, err := RemotePath(target, childRel)
				if err != nil {
					return err
				}
				if e.Link, err = c.ReadLink(p); err != nil {
					return fmt.Errorf("sync: read remote symlink %s: %w", p, err)
				}
			}
			entries = append(entries, e)
			if e.Kind == Dir && !e.Ignored && !isTempName(name) {
				if err := walk(childRel); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, true, err
	}
	return entries, true, nil
}

func kindOf(m fs.FileMode) Kind {
	switch m.Type() {
	case 0:
		return File
	case fs.ModeDir:
		return Dir
	case fs.ModeSymlink:
		return Symlink
	}
	return Other
}

// readManifest reads the manifest of the last successful sync. A missing
// or unreadable manifest is an empty one: every file is then verified by
// content.
func readManifest(c *sftp.Client, target string, log *slog.Logger) (Manifest, error) {
	p, err := RemotePath(target, ManifestName)
	if err != nil {
		return Manifest{}, err
	}
	f, err := c.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Manifest{}, nil
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("sync: open manifest %s: %w", p, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize))
	if err != nil {
		return Manifest{}, fmt.Errorf("sync: read manifest %s: %w", p, err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil || m.Version != manifestVersion {
		log.Warn("sync: ignoring unreadable manifest; every file will be compared by content", "path", p, "err", err, "version", m.Version)
		return Manifest{}, nil
	}
	return m, nil
}

// writeManifest replaces the manifest atomically.
func writeManifest(c *sftp.Client, target string, m Manifest) error {
	p, err := RemotePath(target, ManifestName)
	if err != nil {
		return err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("sync: encode manifest: %w", err)
	}
	return writeAtomic(c, p, func(f *sftp.File) error {
		_, err := f.Write(append(data, '\n'))
		return err
	}, nil)
}

// tempPath returns a fresh temporary name next to dst:
// ".NAME.kmodvm-tmp-XXXXXXXX".
func tempPath(dst string) string {
	dir, base := path.Split(dst)
	if len(base) > 200 { // leave room for the marker within NAME_MAX (255)
		base = base[:200]
	}
	return dir + "." + base + tempMarker + fmt.Sprintf("%08x", rand.Uint32())
}

// writeAtomic creates a temporary file next to dst, lets fill write it,
// runs finish on the closed temporary (chmod, chtimes), then renames it
// over dst. On error the temporary is removed if the connection still
// allows it; a later sync removes it otherwise.
func writeAtomic(c *sftp.Client, dst string, fill func(*sftp.File) error, finish func(tmp string) error) (err error) {
	tmp := tempPath(dst)
	f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if err != nil {
			_ = c.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if finish != nil {
		if err := finish(tmp); err != nil {
			return err
		}
	}
	if err := c.PosixRename(tmp, dst); err != nil {
		return fmt.Errorf("rename %s over %s (needs the posix-rename@openssh.com extension): %w", tmp, dst, err)
	}
	return nil
}

// hashRemote returns the hex SHA-256 of a remote file.
func hashRemote(c *sftp.Client, p string) (string, error) { return hashOf(c.Open(p)) }

// ctxReader fails reads once ctx is done, so a cancelled sync stops in the
// middle of a large file.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(b []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(b)
}
