// Package treesync mirrors a module's source directory into the guest over
// SFTP, sending only what changed.
//
// What it guarantees:
//   - The remote target ends up holding exactly the local tree minus ignored
//     entries (build outputs, .git/, target/, .kmodvmignore patterns).
//     Ignored entries are neither sent nor deleted remotely, so the guest's
//     build outputs survive; a directory gone locally is removed remotely
//     only once nothing ignored is left in it.
//   - Every file is written to ".NAME.kmodvm-tmp-XXXXXXXX" in its final
//     directory and renamed over NAME (posix-rename@openssh.com): no partial
//     file is ever visible under its real name. Leftover temporaries of an
//     interrupted sync are removed by the next one.
//   - Every remote path is built by RemotePath and stays strictly inside the
//     target; remote symlinks are never followed (a remote symlink where
//     the local tree has a directory is replaced, not written through, and
//     a target that is itself a symlink is refused).
//   - File modes (permission bits) and mtimes (whole seconds: SFTP v3) are
//     kept; directory modes are kept, directory mtimes are not.
//   - A local symlink whose target stays inside the tree is recreated as a
//     symlink with the same target text; one that leaves the tree (or is
//     absolute) is refused before anything is written, as is a ".." in an
//     ignore pattern (a *TreeError; Check finds both without a remote).
//     Devices, sockets and fifos are skipped with a warning.
//
// How it decides what changed: the manifest (ManifestName in the target),
// written atomically after every successful sync, records each file's
// local size, mtime (ns), mode and SHA-256. A file is unchanged without
// reading it when its local size and mtime equal the manifest's and the
// remote copy still has the size and mtime the sync gave it. Otherwise a
// different size means "send"; an equal size means "compare SHA-256" (local
// file hashed, remote file read and hashed unless the manifest vouches for
// it). Like rsync, a change that keeps both size and mtime (to the
// nanosecond) is not seen.
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
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/pkg/sftp"
)

// Options tunes a sync.
type Options struct {
	// Ignore holds extra gitignore-like patterns, applied after the
	// built-in rules and .kmodvmignore.
	Ignore []string
	// Log receives per-file debug records and warnings; nil discards them.
	Log *slog.Logger
}

// Summary says what a sync did.
type Summary struct {
	Changed      int           // files and symlinks sent, re-pointed or chmodded
	Deleted      int           // stale files and symlinks removed (directories not counted)
	Unchanged    int           // files and symlinks already right
	Bytes        int64         // file content sent
	Duration     time.Duration //
	ChangedPaths []string      // sorted
}

// String renders the summary for humans: "3 changed, 1 deleted, 0.2 s".
func (s Summary) String() string {
	return fmt.Sprintf("%d changed, %d deleted, %.1f s", s.Changed, s.Deleted, s.Duration.Seconds())
}

// uploadWorkers is how many files are sent at once: SFTP requests are
// pipelined, so a few files in flight hide the round trips of small files.
const uploadWorkers = 4

// Sync makes remoteDir (on the SFTP server) mirror localDir. It checks ctx
// between files and while reading a file; an SFTP call already sent is not
// interrupted (close the client to abort a stuck connection). An
// interrupted sync leaves every remote file either old or new, never
// partial, and the next sync converges.
//
// The client is the caller's; sftp.UseConcurrentWrites(true) speeds up
// large files.
func Sync(ctx context.Context, c *sftp.Client, localDir, remoteDir string, opt Options) (Summary, error) {
	start := time.Now()
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkTarget(remoteDir); err != nil {
		return Summary{}, err
	}
	root, m, local, err := readLocal(ctx, localDir, opt.Ignore, log)
	if err != nil {
		return Summary{}, err
	}
	remote, exists, err := listRemote(ctx, c, remoteDir, m)
	if err != nil {
		return Summary{}, err
	}
	var manifest Manifest
	if exists {
		if manifest, err = readManifest(c, remoteDir, log); err != nil {
			return Summary{}, err
		}
	}

	s := &syncer{c: c, root: root, target: remoteDir, log: log}
	a, err := s.plan(ctx, local, remote, manifest)
	if err != nil {
		return Summary{}, err
	}
	log.Debug("sync: plan", "remove", len(a.Remove), "mkdir", len(a.Mkdir), "upload", len(a.Upload),
		"link", len(a.Link), "setattr", len(a.SetAttrs), "unchanged", a.Unchanged)

	if !exists {
		if err := c.MkdirAll(remoteDir); err != nil {
			return Summary{}, fmt.Errorf("sync: create remote target %s: %w", remoteDir, err)
		}
	}
	s.manifest = a.Manifest
	if err := s.apply(ctx, a); err != nil {
		return Summary{}, err
	}
	if !reflect.DeepEqual(s.manifest, manifest) { // a no-op sync writes nothing
		if err := writeManifest(c, remoteDir, s.manifest); err != nil {
			return Summary{}, fmt.Errorf("sync: write manifest: %w", err)
		}
	}
	sum := Summary{
		Changed:      len(a.Changed),
		Deleted:      len(a.Deleted),
		Unchanged:    a.Unchanged,
		Bytes:        s.bytes,
		Duration:     time.Since(start),
		ChangedPaths: a.Changed,
	}
	log.Debug("sync: done", "summary", sum.String(), "bytes", sum.Bytes)
	return sum, nil
}

// Check reads the local tree as Sync does and returns what Sync would refuse it for (a
// *TreeError for a symlink leading out of it or a bad ignore pattern), touching nothing
// remote: callers use it to reject a module directory before connecting anywhere.
func Check(ctx context.Context, localDir string, opt Options) error {
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_, _, _, err := readLocal(ctx, localDir, opt.Ignore, log)
	return err
}

// readLocal resolves the local tree's root (symlinks included) and lists what to sync.
func readLocal(ctx context.Context, localDir string, ignore []string, log *slog.Logger) (root string, m *Matcher, entries []Entry, err error) {
	root, err = filepath.Abs(localDir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return "", nil, nil, fmt.Errorf("sync: module directory %s: %w", localDir, err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return "", nil, nil, fmt.Errorf("sync: module directory %s is not a directory; hint: pass the directory holding the module's Makefile or Kbuild", localDir)
	}
	if m, err = LoadMatcher(root, ignore); err != nil {
		return "", nil, nil, err
	}
	if entries, err = walkLocal(ctx, root, m, log); err != nil {
		return "", nil, nil, err
	}
	return root, m, entries, nil
}

type syncer struct {
	c      *sftp.Client
	root   string // local, symlinks resolved
	target string // remote
	log    *slog.Logger

	mu       sync.Mutex
	manifest Manifest // to write at the end; uploads record what they sent
	bytes    int64
}

// plan runs Plan, hashing what it asks for (local files first, then remote
// ones the manifest cannot vouch for), until the plan is final.
func (s *syncer) plan(ctx context.Context, local, remote []Entry, manifest Manifest) (Actions, error) {
	li, ri := map[string]int{}, map[string]int{}
	for i, e := range local {
		li[e.Path] = i
	}
	for i, e := range remote {
		ri[e.Path] = i
	}
	for round := 0; ; round++ {
		a, err := Plan(local, remote, manifest)
		if err != nil {
			return Actions{}, fmt.Errorf("sync: %w", err)
		}
		if len(a.Verify) == 0 {
			return a, nil
		}
		if round == 2 {
			return Actions{}, fmt.Errorf("sync: internal error: plan still wants %d hashes after two rounds", len(a.Verify))
		}
		for _, p := range a.Verify {
			if err := ctx.Err(); err != nil {
				return Actions{}, err
			}
			if l := &local[li[p]]; l.SHA256 == "" {
				if l.SHA256, err = hashLocal(s.localPath(p)); err != nil {
					return Actions{}, fmt.Errorf("sync: hash %s: %w", p, err)
				}
				continue
			}
			rp, err := RemotePath(s.target, p)
			if err != nil {
				return Actions{}, err
			}
			r := &remote[ri[p]]
			if r.SHA256, err = hashRemote(s.c, rp); err != nil {
				return Actions{}, fmt.Errorf("sync: hash remote %s: %w", rp, err)
			}
		}
	}
}

func (s *syncer) localPath(rel string) string {
	return filepath.Join(s.root, filepath.FromSlash(rel))
}

func (s *syncer) remotePath(rel string) (string, error) {
	return RemotePath(s.target, rel)
}

func (s *syncer) apply(ctx context.Context, a Actions) error {
	for _, r := range a.Remove {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.remove(r); err != nil {
			return err
		}
	}
	for _, d := range a.Mkdir {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.mkdir(d); err != nil {
			return err
		}
		// The mode is set last, in case it denies writing.
		a.SetAttrs = append(a.SetAttrs, SetAttr{Path: d.Path, SetMode: true, Mode: d.Mode})
	}
	if err := s.uploadAll(ctx, a.Upload); err != nil {
		return err
	}
	for _, l := range a.Link {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.link(l); err != nil {
			return err
		}
	}
	// Deepest paths first, so a directory made read-only is done last.
	sort.Slice(a.SetAttrs, func(i, j int) bool { return a.SetAttrs[i].Path > a.SetAttrs[j].Path })
	for _, fix := range a.SetAttrs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.setAttr(fix); err != nil {
			return err
		}
	}
	return nil
}

func (s *syncer) remove(r Removal) error {
	p, err := s.remotePath(r.Path)
	if err != nil {
		return err
	}
	s.log.Debug("sync: remove", "path", r.Path, "kind", r.Kind.String(), "recursive", r.Recursive)
	switch {
	case r.Recursive:
		err = s.c.RemoveAll(p)
	case r.Kind == Dir:
		err = s.c.RemoveDirectory(p)
	default:
		err = s.c.Remove(p)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sync: remove remote %s: %w", p, err)
	}
	return nil
}

func (s *syncer) mkdir(d Entry) error {
	p, err := s.remotePath(d.Path)
	if err != nil {
		return err
	}
	s.log.Debug("sync: mkdir", "path", d.Path)
	if err := s.c.Mkdir(p); err != nil {
		// Already there as a directory (an ignored one, say) is fine.
		if fi, lerr := s.c.Lstat(p); lerr != nil || !fi.IsDir() {
			return fmt.Errorf("sync: create remote directory %s: %w", p, err)
		}
	}
	return nil
}

func (s *syncer) link(l Entry) error {
	p, err := s.remotePath(l.Path)
	if err != nil {
		return err
	}
	s.log.Debug("sync: symlink", "path", l.Path, "target", l.Link)
	tmp := tempPath(p)
	if err := s.c.Symlink(l.Link, tmp); err != nil {
		return fmt.Errorf("sync: create remote symlink %s: %w", tmp, err)
	}
	if err := s.c.PosixRename(tmp, p); err != nil {
		_ = s.c.Remove(tmp)
		return fmt.Errorf("sync: rename %s over %s: %w", tmp, p, err)
	}
	return nil
}

func (s *syncer) setAttr(a SetAttr) error {
	p, err := s.remotePath(a.Path)
	if err != nil {
		return err
	}
	s.log.Debug("sync: setattr", "path", a.Path, "mode", a.Mode.String(), "set_mode", a.SetMode, "set_mtime", a.SetMtime)
	if a.SetMode {
		if err := s.c.Chmod(p, a.Mode); err != nil {
			return fmt.Errorf("sync: chmod remote %s: %w", p, err)
		}
	}
	if a.SetMtime {
		t := time.Unix(0, a.Mtime)
		if err := s.c.Chtimes(p, t, t); err != nil {
			return fmt.Errorf("sync: set mtime of remote %s: %w", p, err)
		}
	}
	return nil
}

// uploadAll sends files, a few at a time. The first error stops the rest.
func (s *syncer) uploadAll(ctx context.Context, files []Entry) error {
	if len(files) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan Entry)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for range min(uploadWorkers, len(files)) {
		wg.Go(func() {
			for e := range jobs {
				if ctx.Err() != nil {
					continue
				}
				if err := s.upload(ctx, e); err != nil {
					errMu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					errMu.Unlock()
					cancel()
				}
			}
		})
	}
feed:
	for _, e := range files {
		select {
		case jobs <- e:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// upload sends one file through a temporary and records what it sent in
// the manifest.
func (s *syncer) upload(ctx context.Context, e Entry) error {
	p, err := s.remotePath(e.Path)
	if err != nil {
		return err
	}
	s.log.Debug("sync: upload", "path", e.Path, "size", e.Size)
	lf, err := os.Open(s.localPath(e.Path))
	if err != nil {
		return fmt.Errorf("sync: open %s: %w", e.Path, err)
	}
	defer lf.Close()
	h := sha256.New()
	var n int64
	err = writeAtomic(s.c, p, func(f *sftp.File) error {
		// A LimitedReader lets the client size its concurrent writes; the
		// walk's size is what the manifest records, so a file growing
		// meanwhile is sent again next time.
		var err error
		n, err = f.ReadFrom(&io.LimitedReader{R: io.TeeReader(ctxReader{ctx, lf}, h), N: e.Size})
		return err
	}, func(tmp string) error {
		if err := s.c.Chmod(tmp, e.Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", tmp, err)
		}
		t := time.Unix(0, e.Mtime)
		if err := s.c.Chtimes(tmp, t, t); err != nil {
			return fmt.Errorf("set mtime of %s: %w", tmp, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sync: upload %s: %w", e.Path, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bytes += n
	s.manifest.Files[e.Path] = ManifestEntry{Size: n, Mtime: e.Mtime, Mode: uint32(e.Mode), SHA256: hex.EncodeToString(h.Sum(nil))}
	return nil
}
