package images

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Progress receives short status lines while long work runs ("mmdebstrap: downloading
// packages", "packing ext4", ...). It may be nil.
type Progress func(status string)

func (p Progress) report(format string, args ...any) {
	if p != nil {
		p(fmt.Sprintf(format, args...))
	}
}

// buildFunc fills the temporary entry directory tmp. failedLog is where tmp/build.log is kept
// when the build fails, so error messages can point at it.
type buildFunc func(tmp, failedLog string) error

const logName = "build.log"

// buildEntry returns parent/hash, building it with build first when it does not exist. The
// entry is built in parent/.tmp-<hash>-* and renamed into place only when build succeeds:
// an interrupted or failed build leaves no entry (its log is kept as parent/<hash>.failed.log
// unless the context was cancelled). A lock file serializes builds of the same hash across
// processes; temporary directories of that hash found while holding it are stale (their
// builder was killed) and removed.
func buildEntry(ctx context.Context, log *slog.Logger, parent, hash string, build buildFunc) (dir string, hit bool, err error) {
	final := filepath.Join(parent, hash)
	if isDir(final) {
		return final, true, nil
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", false, fmt.Errorf("create cache directory: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(parent, hash+".lock"))
	if err != nil {
		return "", false, err
	}
	defer unlock()
	if isDir(final) { // built by another process while we waited for the lock
		return final, true, nil
	}
	stale, _ := filepath.Glob(filepath.Join(parent, ".tmp-"+hash+"-*"))
	for _, s := range stale {
		log.Info("removing stale partial cache entry", "dir", s)
		if err := removeTree(s); err != nil {
			return "", false, fmt.Errorf("remove stale partial cache entry: %w", err)
		}
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+hash+"-")
	if err != nil {
		return "", false, fmt.Errorf("create cache entry: %w", err)
	}
	failedLog := filepath.Join(parent, hash+".failed.log")
	if err := build(tmp, failedLog); err != nil {
		if ctx.Err() == nil {
			_ = os.Rename(filepath.Join(tmp, logName), failedLog)
		}
		if rerr := removeTree(tmp); rerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up partial cache entry: %w", rerr))
		}
		return "", false, err
	}
	if err := ctx.Err(); err != nil { // interrupted after the last step: keep nothing all the same
		_ = removeTree(tmp)
		return "", false, err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes 0700; libvirt's qemu user must traverse it
		_ = removeTree(tmp)
		return "", false, fmt.Errorf("finish cache entry: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = removeTree(tmp)
		return "", false, fmt.Errorf("finish cache entry: %w", err)
	}
	_ = os.Remove(failedLog)
	return final, false, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// lockFile takes an exclusive flock on path, waiting until it is free or ctx ends.
func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); _ = f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			_ = f.Close()
			return nil, fmt.Errorf("wait for another kmodvm building the same image (lock %s): %w", path, ctx.Err())
		case <-tick.C:
		}
	}
}

// removeTree removes dir recursively, but refuses when anything is mounted at or below it:
// a build killed at the wrong moment could leave /proc or a bind mount of the host's /dev
// inside a root, and RemoveAll would then delete host files.
func removeTree(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	mounts, err := mountsUnder(real)
	if err != nil {
		return err
	}
	if len(mounts) > 0 {
		return fmt.Errorf("refusing to remove %s: %s is mounted inside it; hint: umount -R %s, then retry", dir, mounts[0], mounts[0])
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists the mount points at or below dir (read from /proc/self/mountinfo).
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	return parseMountsUnder(f, dir)
}

func parseMountsUnder(r io.Reader, dir string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMount decodes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range []byte(s[i+1 : i+4]) {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + (c - '0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// logWriter copies a command's output to the build log, keeps its last lines for error
// messages, and hands each complete line to onLine. Safe for concurrent writes.
type logWriter struct {
	mu     sync.Mutex
	w      io.Writer
	onLine func(string)
	max    int
	tail   []string
	part   []byte
}

func newLogWriter(w io.Writer, keep int, onLine func(string)) *logWriter {
	return &logWriter{w: w, onLine: onLine, max: keep}
}

func (l *logWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.w.Write(p); err != nil {
		return 0, err
	}
	l.part = append(l.part, p...)
	for {
		i := strings.IndexAny(string(l.part), "\n\r")
		if i < 0 {
			break
		}
		l.line(string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *logWriter) line(s string) {
	s = strings.TrimRight(s, " \t")
	if s == "" {
		return
	}
	if len(l.tail) == l.max && l.max > 0 {
		l.tail = append(l.tail[:0], l.tail[1:]...)
	}
	if l.max > 0 {
		l.tail = append(l.tail, s)
	}
	if l.onLine != nil {
		l.onLine(s)
	}
}

// Tail returns the last lines written, including an unterminated last line.
func (l *logWriter) Tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.tail
	if len(l.part) > 0 {
		lines = append(slices.Clone(lines), strings.TrimSpace(string(l.part)))
		if len(lines) > l.max {
			lines = lines[len(lines)-l.max:]
		}
	}
	return strings.Join(lines, "\n")
}
