package ondisk

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, p, s string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCopyTree(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, "Makefile"), "all:\n", 0o644)
	write(t, filepath.Join(src, "scripts/fixdep"), "elf", 0o755)
	write(t, filepath.Join(src, "skipped/big.o"), "obj", 0o644)
	write(t, filepath.Join(src, "kernel/fork.o"), "obj", 0o644)
	if err := os.Symlink("../Makefile", filepath.Join(src, "scripts/link")); err != nil {
		t.Fatal(err)
	}
	old := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "Makefile"), old, old)
	// A file at the destination that is a hardlink to something else must be replaced,
	// never written into.
	shared := filepath.Join(t.TempDir(), "shared")
	write(t, shared, "root's makefile", 0o644)
	if err := os.Link(shared, filepath.Join(dst, "Makefile")); err != nil {
		t.Fatal(err)
	}

	kept, err := CopyTree(context.Background(), src, dst, CopyOptions{Skip: func(rel string, d fs.DirEntry) bool {
		return rel == "skipped" || strings.HasSuffix(rel, ".o")
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(kept, " "); got != "Makefile scripts/fixdep scripts/link" {
		t.Errorf("kept = %q", got)
	}
	if read(t, filepath.Join(dst, "Makefile")) != "all:\n" || read(t, shared) != "root's makefile" {
		t.Errorf("the hardlinked destination was written into, or not replaced")
	}
	if fi, err := os.Stat(filepath.Join(dst, "Makefile")); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("mtime not kept: %v, %v", fi, err)
	}
	if fi, err := os.Stat(filepath.Join(dst, "scripts/fixdep")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("mode not kept: %v, %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "scripts/link")); err != nil || l != "../Makefile" {
		t.Errorf("symlink = %q, %v", l, err)
	}
	for _, gone := range []string{"skipped", "kernel"} {
		if _, err := os.Lstat(filepath.Join(dst, gone)); !os.IsNotExist(err) {
			t.Errorf("%s was copied: %v", gone, err)
		}
	}
	if tmps, _ := filepath.Glob(filepath.Join(dst, "*", "*.kmodvm-tmp")); len(tmps) > 0 {
		t.Errorf("temporary files left: %v", tmps)
	}
}

// SkipUnchanged copies only what changed: an unchanged destination file keeps its inode.
func TestCopyTreeSkipUnchanged(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	write(t, filepath.Join(src, "a"), "1", 0o644)
	write(t, filepath.Join(src, "b"), "2", 0o644)
	if _, err := CopyTree(context.Background(), src, dst, CopyOptions{SkipUnchanged: true}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(filepath.Join(dst, "a"))
	write(t, filepath.Join(src, "b"), "22", 0o644)
	if _, err := CopyTree(context.Background(), src, dst, CopyOptions{SkipUnchanged: true}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dst, "a"))
	if !os.SameFile(before, after) {
		t.Errorf("an unchanged file was copied again")
	}
	if read(t, filepath.Join(dst, "b")) != "22" {
		t.Errorf("a changed file was not copied")
	}
}

func TestCopyTreeStopsWhenCancelled(t *testing.T) {
	src := t.TempDir()
	write(t, filepath.Join(src, "a"), "1", 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := CopyTree(ctx, src, t.TempDir(), CopyOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v", err)
	}
}

func TestLockWaitsAndTryLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sub", "x.lock")
	unlock, err := Lock(context.Background(), p, func() { t.Error("waited for a free lock") })
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := TryLock(p); ok || err != nil {
		t.Errorf("TryLock on a held lock = %v, %v", ok, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waited := false
	_, err = Lock(ctx, p, func() { waited = true; cancel() })
	if !waited || !errors.Is(err, context.Canceled) {
		t.Errorf("Lock on a held lock: waited=%v err=%v", waited, err)
	}
	unlock()
	u2, ok, err := TryLock(p)
	if !ok || err != nil {
		t.Fatalf("TryLock on a free lock = %v, %v", ok, err)
	}
	u2()
}

func TestWriteFileAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := WriteFileAtomic(p, []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o640 || read(t, p) != "x" {
		t.Errorf("%v %v", fi, err)
	}
}
