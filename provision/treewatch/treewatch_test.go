package treewatch_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/treewatch"
	"github.com/kmodvm/kmodvm/provision/treewatch/treewatchtest"
)

// These tests change a real directory under a real inotify watch, with a manual clock: a
// test waits until the watcher has seen an event (Options.Seen), and the quiet period ends
// when the test fires the timer, never by time. A change is saved the way editors save
// (a temporary file renamed over the target): one event per save, so no write the test did
// can reach the watcher after the test moved on. Events in one directory arrive in order,
// so what a test does before a save the watcher has seen, it has judged too.

// harness is a watched directory.
type harness struct {
	t      *testing.T
	dir    string
	w      *treewatch.Watcher
	clock  *treewatchtest.Clock
	events treewatchtest.Events
}

func start(t *testing.T, files map[string]string) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: treewatchtest.New(time.Date(2026, 5, 4, 14, 2, 0, 0, time.UTC)),
		events: treewatchtest.NewEvents()}
	for name, content := range files {
		h.write(name, content)
	}
	w, err := treewatch.New(h.dir, treewatch.Options{Clock: h.clock, Seen: h.events.Seen})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return h
}

// write writes a file directly (with the several events that makes), creating its directory.
func (h *harness) write(name, content string) {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

// save saves name as an editor does, and waits until the watcher has counted it.
func (h *harness) save(name, content string) {
	h.t.Helper()
	treewatchtest.Save(h.t, h.dir, name, content)
	h.events.WaitCounted(h.t, name)
}

func (h *harness) next() (treewatch.Batch, error) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return h.w.Next(ctx)
}

// step is one thing a test does to the directory or the watcher.
type step struct {
	save    string            // save this file (an editor's save) and wait until it counts
	content string            // what save writes
	write   map[string]string // write these files directly: none of them may count
	remove  string            // remove this file and wait until it counts
	moveIn  map[string]string // files made outside, their directory then moved in whole (the first path element); waits until it counts
	fire    bool              // end the quiet period
	want    []string          // Next returns a batch of exactly these paths
}

func TestWatcher(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		steps []step
	}{
		{name: "a save is a batch", steps: []step{
			{save: "hello.rs"}, {fire: true}, {want: []string{"hello.rs"}},
		}},
		{name: "two saves, each quiet, are two batches", steps: []step{
			{save: "hello.rs"}, {fire: true}, {want: []string{"hello.rs"}},
			{save: "Kbuild"}, {fire: true}, {want: []string{"Kbuild"}},
		}},
		{name: "a burst is one batch", steps: []step{
			{save: "hello.rs"}, {save: "Kbuild"}, {save: "hello.rs"}, {save: "util.rs"}, {fire: true},
			{want: []string{"Kbuild", "hello.rs", "util.rs"}},
		}},
		{name: "editors' temporary files and build outputs never count", files: map[string]string{".git/HEAD": "ref\n"}, steps: []step{
			{write: map[string]string{
				"4913": "", ".hello.rs.swp": "swap", "hello.rs.swx": "", "hello.rs~": "backup", "#hello.rs#": "autosave",
				"hello.rs___jb_tmp___": "", ".goutputstream-XYZ": "",
				"hello.o": "obj", ".hello.o.cmd": "cmd", "hello.ko": "ko", "Module.symvers": "", "modules.order": "",
				".git/index": "idx", "target/debug/build": "x", ".kmodvm-sync.json": "{}",
			}},
			{save: "hello.rs"}, {fire: true}, {want: []string{"hello.rs"}},
		}},
		{name: "changes while nobody takes the batch are one more batch", steps: []step{
			{save: "a.rs"}, {fire: true}, {save: "b.rs"}, {fire: true}, {save: "a.rs"}, {fire: true},
			{want: []string{"a.rs", "b.rs"}},
			{save: "c.rs"}, {fire: true}, {want: []string{"c.rs"}},
		}},
		{name: "a new directory is watched, with the files it came with", steps: []step{
			{moveIn: map[string]string{"sub/x.c": "x", "sub/deeper/y.c": "y", "sub/x.o": "obj"}}, {fire: true},
			{want: []string{"sub", "sub/deeper", "sub/deeper/y.c", "sub/x.c"}},
			{save: "sub/deeper/z.c"}, {fire: true}, {want: []string{"sub/deeper/z.c"}},
		}},
		{name: "an ignored new directory is not watched", steps: []step{
			{write: map[string]string{"target/release/out": "x"}},
			{write: map[string]string{"target/release/more": "x"}},
			{save: "a.rs"}, {fire: true}, {want: []string{"a.rs"}},
		}},
		{name: "a removal counts", files: map[string]string{"old.c": "old"}, steps: []step{
			{remove: "old.c"}, {fire: true}, {want: []string{"old.c"}},
		}},
		{name: ".kmodvmignore is read again when it changes", files: map[string]string{"notes/todo": "x"}, steps: []step{
			{save: "notes/todo"}, {fire: true}, {want: []string{"notes/todo"}},
			{save: ".kmodvmignore", content: "*.log\nnotes/\n"}, {fire: true}, {want: []string{".kmodvmignore"}},
			{write: map[string]string{"build.log": "x", "notes/todo": "y"}},
			{save: "a.rs"}, {fire: true}, {want: []string{"a.rs"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := start(t, tt.files)
			for i, s := range tt.steps {
				switch {
				case s.save != "":
					h.save(s.save, s.content)
				case s.write != nil:
					for name, content := range s.write {
						h.write(name, content)
					}
				case s.remove != "":
					if err := os.Remove(filepath.Join(h.dir, s.remove)); err != nil {
						t.Fatal(err)
					}
					h.events.WaitCounted(t, s.remove)
				case s.moveIn != nil:
					outside := t.TempDir()
					top := ""
					for name, content := range s.moveIn {
						top, _, _ = strings.Cut(name, "/")
						p := filepath.Join(outside, name)
						if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
							t.Fatal(err)
						}
						if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
							t.Fatal(err)
						}
					}
					if err := os.Rename(filepath.Join(outside, top), filepath.Join(h.dir, top)); err != nil {
						t.Fatal(err)
					}
					h.events.WaitCounted(t, top)
				case s.fire:
					if !h.clock.Fire() {
						t.Fatalf("step %d: no quiet period was running: nothing counted", i)
					}
				case s.want != nil:
					b, err := h.next()
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if !slices.Equal(b.Paths, s.want) || b.Overflow {
						t.Fatalf("step %d: batch %v (overflow %v), want %v", i, b.Paths, b.Overflow, s.want)
					}
				}
			}
			if n := h.clock.Armed(); n != 0 {
				t.Errorf("%d quiet periods still running: a change counted that no batch carried", n)
			}
		})
	}
}

// TestWatcherRootRemoved: watching ends with an error that says what to do.
func TestWatcherRootRemoved(t *testing.T) {
	h := start(t, map[string]string{"Kbuild": "obj-m := hello.o\n"})
	if err := os.RemoveAll(h.dir); err != nil {
		t.Fatal(err)
	}
	_, err := h.next()
	if err == nil || !strings.Contains(err.Error(), "was removed or moved away") || !strings.Contains(err.Error(), "hint:") {
		t.Fatalf("Next after the root was removed: %v", err)
	}
}

// TestWatcherStops: Next ends with its context, and after Close with ErrClosed.
func TestWatcherStops(t *testing.T) {
	h := start(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with a cancelled context: %v", err)
	}
	h.save("a.rs", "") // a batch in the making is dropped
	if err := h.w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.next(); !errors.Is(err, treewatch.ErrClosed) {
		t.Errorf("Next after Close: %v, want ErrClosed", err)
	}
}

// TestWatcherBadIgnoreFile: a .kmodvmignore the sync refuses is refused here too.
func TestWatcherBadIgnoreFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".kmodvmignore"), []byte("../secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := treewatch.New(dir, treewatch.Options{})
	if err == nil {
		w.Close()
		t.Fatal("New accepted a .kmodvmignore with ..")
	}
	if !strings.Contains(err.Error(), "hint:") {
		t.Errorf("error has no hint: %v", err)
	}
}
