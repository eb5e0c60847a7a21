package images

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/kmodvm/kmodvm/images/ondisk"
)

// Progress receives short status lines while long work runs ("mmdebstrap: downloading
// packages", "packing ext4", ...). It may be nil.
type Progress func(status string)

func (p Progress) report(format string, args ...any) {
	if p != nil {
		p(fmt.Sprintf(format, args...))
	}
}

const logName = ondisk.LogName

// entriesDir is the absolute directory that holds one kind of cache entry ("roots", "disks").
func entriesDir(cacheDir, kind string) (string, error) {
	abs, err := filepath.Abs(cacheDir)
	if err != nil {
		return "", fmt.Errorf("cache directory: %w", err)
	}
	return filepath.Join(abs, kind), nil
}

// cachedEntry is ondisk.Entry that logs whether what (a "guest disk") was found or built.
func cachedEntry(ctx context.Context, log *slog.Logger, what, parent, key string, build ondisk.BuildFunc) (string, error) {
	dir, hit, err := ondisk.Entry(ctx, log, parent, key, build)
	if err != nil {
		return "", err
	}
	if hit {
		log.Debug(what+" cached", "dir", dir)
	} else {
		log.Info(what+" built", "dir", dir)
	}
	return dir, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
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
