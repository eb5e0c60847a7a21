package images

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestBuildEntry(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	hash := "abc123"
	calls := 0
	build := func(tmp, failedLog string) error {
		calls++
		return os.WriteFile(filepath.Join(tmp, "content"), []byte("ok"), 0o644)
	}

	dir, hit, err := buildEntry(ctx, discardLogger(), parent, hash, build)
	if err != nil || hit || calls != 1 {
		t.Fatalf("first build: dir=%s hit=%v calls=%d err=%v", dir, hit, calls, err)
	}
	if dir != filepath.Join(parent, hash) {
		t.Errorf("dir = %s", dir)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("entry dir: %v, %v; want mode 0755", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "content")); err != nil || string(b) != "ok" {
		t.Errorf("content = %q, %v", b, err)
	}
	dir2, hit, err := buildEntry(ctx, discardLogger(), parent, hash, build)
	if err != nil || !hit || calls != 1 || dir2 != dir {
		t.Fatalf("second build: dir=%s hit=%v calls=%d err=%v; want a hit without building", dir2, hit, calls, err)
	}
	assertNoTemp(t, parent)
}

func TestBuildEntryFailure(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	boom := errors.New("boom")
	_, _, err := buildEntry(ctx, discardLogger(), parent, "h1", func(tmp, failedLog string) error {
		if err := os.WriteFile(filepath.Join(tmp, logName), []byte("the log\n"), 0o644); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if _, err := os.Stat(filepath.Join(parent, "h1")); !os.IsNotExist(err) {
		t.Errorf("failed build left an entry: %v", err)
	}
	assertNoTemp(t, parent)
	if b, err := os.ReadFile(filepath.Join(parent, "h1.failed.log")); err != nil || string(b) != "the log\n" {
		t.Errorf("failed log = %q, %v", b, err)
	}

	// The next successful build is not a hit and drops the failed log.
	_, hit, err := buildEntry(ctx, discardLogger(), parent, "h1", func(tmp, failedLog string) error { return nil })
	if err != nil || hit {
		t.Fatalf("rebuild: hit=%v err=%v", hit, err)
	}
	if _, err := os.Stat(filepath.Join(parent, "h1.failed.log")); !os.IsNotExist(err) {
		t.Errorf("failed log still there after a successful build")
	}
}

func TestBuildEntryCancelled(t *testing.T) {
	// Interrupted during the build, or after its last step (a step that does not look at
	// the context): either way no entry.
	for _, lastStepSeesIt := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		parent := t.TempDir()
		_, _, err := buildEntry(ctx, discardLogger(), parent, "h2", func(tmp, failedLog string) error {
			_ = os.WriteFile(filepath.Join(tmp, logName), []byte("partial"), 0o644)
			cancel()
			if lastStepSeesIt {
				return ctx.Err()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		entries, _ := os.ReadDir(parent)
		for _, e := range entries {
			if e.Name() != "h2.lock" {
				t.Errorf("cancelled build left %s", e.Name())
			}
		}
	}
}

func TestBuildEntryRemovesStaleTemp(t *testing.T) {
	parent := t.TempDir()
	stale := filepath.Join(parent, ".tmp-h3-12345")
	other := filepath.Join(parent, ".tmp-other-1")
	for _, d := range []string{filepath.Join(stale, "root", "etc"), other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := buildEntry(context.Background(), discardLogger(), parent, "h3", func(tmp, _ string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp dir of the same hash not removed")
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("temp dir of another hash was removed: %v", err)
	}
}

func TestBuildEntryLockWaitsForContext(t *testing.T) {
	parent := t.TempDir()
	unlock, err := lockFile(context.Background(), filepath.Join(parent, "h4.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = buildEntry(ctx, discardLogger(), parent, "h4", func(string, string) error {
		t.Error("built while another builder held the lock")
		return nil
	})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "another kmodvm") {
		t.Fatalf("err = %v", err)
	}
}

func assertNoTemp(t *testing.T, parent string) {
	t.Helper()
	tmps, _ := filepath.Glob(filepath.Join(parent, ".tmp-*"))
	if len(tmps) > 0 {
		t.Errorf("temporary directories left: %v", tmps)
	}
}

func TestParseMountsUnder(t *testing.T) {
	mountinfo := `22 1 0:21 / /proc rw - proc proc rw
30 22 0:25 / /var/cache/k/roots/.tmp-x/root/proc rw - proc proc rw
31 22 0:26 / /var/cache/k/roots/.tmp-x/root/dev rw - devtmpfs udev rw
32 22 0:27 / /var/cache/k/roots/.tmp-xy rw - tmpfs tmpfs rw
33 22 0:28 / /var/cache/k/a\040b/x rw - tmpfs tmpfs rw
`
	tests := []struct {
		dir  string
		want []string
	}{
		{"/var/cache/k/roots/.tmp-x", []string{"/var/cache/k/roots/.tmp-x/root/proc", "/var/cache/k/roots/.tmp-x/root/dev"}},
		{"/var/cache/k/roots/.tmp-xy", []string{"/var/cache/k/roots/.tmp-xy"}},
		{"/var/cache/k/a b", []string{"/var/cache/k/a b/x"}},
		{"/var/cache/k/roots/.tmp-z", nil},
	}
	for _, tt := range tests {
		got, err := parseMountsUnder(strings.NewReader(mountinfo), tt.dir)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("parseMountsUnder(%s) = %v, want %v", tt.dir, got, tt.want)
		}
	}
}

func TestLogWriter(t *testing.T) {
	var file strings.Builder
	var seen []string
	w := newLogWriter(&file, 3, func(s string) { seen = append(seen, s) })
	for _, chunk := range []string{"I: one\nI: t", "wo\n\nthree\r\nfour\n", "five"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if file.String() != "I: one\nI: two\n\nthree\r\nfour\nfive" {
		t.Errorf("log file = %q", file.String())
	}
	if strings.Join(seen, "|") != "I: one|I: two|three|four" {
		t.Errorf("lines = %q", seen)
	}
	if got := w.Tail(); got != "three\nfour\nfive" {
		t.Errorf("Tail() = %q", got)
	}
}

func TestCommandFailedMessage(t *testing.T) {
	err := commandFailed("image build", "mmdebstrap", errors.New("exec: not started"), "E: a\nE: b", "/c/roots/h.failed.log")
	msg := err.Error()
	for _, want := range []string{"image build failed (mmdebstrap: exec: not started); last lines:\nE: a\nE: b\n", "hint: full log in /c/roots/h.failed.log"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}
