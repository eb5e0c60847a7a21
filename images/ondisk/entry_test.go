package ondisk

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

func TestEntry(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	hash := "abc123"
	calls := 0
	build := func(tmp, failedLog string) error {
		calls++
		return os.WriteFile(filepath.Join(tmp, "content"), []byte("ok"), 0o644)
	}

	dir, hit, err := Entry(ctx, discardLogger(), parent, hash, build)
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
	dir2, hit, err := Entry(ctx, discardLogger(), parent, hash, build)
	if err != nil || !hit || calls != 1 || dir2 != dir {
		t.Fatalf("second build: dir=%s hit=%v calls=%d err=%v; want a hit without building", dir2, hit, calls, err)
	}
	assertNoTemp(t, parent)
}

func TestEntryFailure(t *testing.T) {
	ctx := context.Background()
	parent := t.TempDir()
	boom := errors.New("boom")
	_, _, err := Entry(ctx, discardLogger(), parent, "h1", func(tmp, failedLog string) error {
		if err := os.WriteFile(filepath.Join(tmp, LogName), []byte("the log\n"), 0o644); err != nil {
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
	_, hit, err := Entry(ctx, discardLogger(), parent, "h1", func(tmp, failedLog string) error { return nil })
	if err != nil || hit {
		t.Fatalf("rebuild: hit=%v err=%v", hit, err)
	}
	if _, err := os.Stat(filepath.Join(parent, "h1.failed.log")); !os.IsNotExist(err) {
		t.Errorf("failed log still there after a successful build")
	}
}

func TestEntryCancelled(t *testing.T) {
	// Interrupted during the build, or after its last step (a step that does not look at
	// the context): either way no entry.
	for _, lastStepSeesIt := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		parent := t.TempDir()
		_, _, err := Entry(ctx, discardLogger(), parent, "h2", func(tmp, failedLog string) error {
			_ = os.WriteFile(filepath.Join(tmp, LogName), []byte("partial"), 0o644)
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

// A builder killed with SIGKILL leaves its temporary directory behind. The next build in
// the same cache removes every such directory whose key nobody is building, and leaves
// alone those of a builder still alive (it holds its key's lock).
func TestEntrySweepsStaleTemps(t *testing.T) {
	parent := t.TempDir()
	sameKey := filepath.Join(parent, ".tmp-h3-12345")
	deadOther := filepath.Join(parent, ".tmp-other-1")
	liveOther := filepath.Join(parent, ".tmp-busy-2")
	freeLock := filepath.Join(parent, ".tmp-free-3") // its builder's lock file is there, not held
	if err := os.WriteFile(filepath.Join(parent, "free.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Join(sameKey, "root", "etc"), deadOther, liveOther, freeLock} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	unlock, err := Lock(context.Background(), filepath.Join(parent, "busy.lock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, _, err := Entry(context.Background(), discardLogger(), parent, "h3", func(tmp, _ string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for _, gone := range []string{sameKey, deadOther, freeLock} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("stale temp dir %s not removed", gone)
		}
	}
	if _, err := os.Stat(liveOther); err != nil {
		t.Errorf("temp dir of a live builder was removed: %v", err)
	}
}

func TestEntryLockWaitsForContext(t *testing.T) {
	parent := t.TempDir()
	unlock, err := Lock(context.Background(), filepath.Join(parent, "h4.lock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = Entry(ctx, discardLogger(), parent, "h4", func(string, string) error {
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
