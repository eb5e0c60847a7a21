package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A build stopped at any point never breaks the next one. Each case builds a base kernel,
// then a variant that is stopped at one point, then the variant again, which must succeed
// with a complete rust/uapi/uapi_generated.rs (an empty one, left by make killed with
// SIGKILL, used to fail every later build in rustc).
func TestInterruptedBuildThenBuild(t *testing.T) {
	variant := Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{"CONFIG_CONFIGFS_FS=y"}}}
	gen := "rust/uapi/uapi_generated.rs"
	cases := []struct {
		name string
		// stop prepares the tree and returns the context of the build to stop, and what
		// cancels it once the build reached the point (nil: the build stops itself).
		stop        func(t *testing.T, tree string, pl *progressLog) context.Context
		wantErr     error
		wantRecover bool
	}{
		{
			name: "Ctrl-C while bindgen writes",
			stop: func(t *testing.T, tree string, pl *progressLog) context.Context {
				return cancelWhenPaused(t, tree, "bindgen")
			},
			wantErr: context.Canceled,
		},
		{
			name: "Ctrl-C during Kconfig",
			stop: func(t *testing.T, tree string, pl *progressLog) context.Context {
				return cancelWhenPaused(t, tree, "allnoconfig")
			},
			wantErr: context.Canceled,
		},
		{
			name: "make SIGKILLed while bindgen writes",
			stop: func(t *testing.T, tree string, pl *progressLog) context.Context {
				writeFile(t, filepath.Join(tree, ".fake-crash-bindgen"), "")
				return t.Context()
			},
			wantErr:     errKilled,
			wantRecover: true,
		},
		{
			name: "Ctrl-C while staging",
			stop: func(t *testing.T, tree string, pl *progressLog) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				pl.on = func(p Progress) {
					if p.Phase == "stage" {
						cancel()
					}
				}
				return ctx
			},
			wantErr: context.Canceled,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, _, pl := newTestBuilder(t)
			base, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}})
			if err != nil {
				t.Fatal(err)
			}
			tree := treeOf(t, b)
			os.Remove(filepath.Join(tree, gen)) // as a changed header makes make regenerate it

			_, err = b.Build(tc.stop(t, tree, pl), variant)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("stopped build: %v, want %v", err, tc.wantErr)
			}
			pl.on = nil
			res, err := b.Build(t.Context(), variant)
			if err != nil {
				t.Fatalf("build after the stop: %v\nprogress:\n%s", err, pl.text())
			}
			if res.Cached || res.Key == base.Key {
				t.Errorf("the variant came from the cache: %+v", res)
			}
			checkTreeAfterRecovery(t, tree, gen)
			if got := strings.Contains(pl.text(), "recover: "); got != tc.wantRecover {
				t.Errorf("recovery reported = %v, want %v:\n%s", got, tc.wantRecover, pl.text())
			}
			if tmps, _ := filepath.Glob(filepath.Join(b.Cache, "builds", ".tmp-*")); len(tmps) > 0 {
				t.Errorf("temporary entries left: %v", tmps)
			}
		})
	}
}

// kmodvm itself SIGKILLed mid-build (its deferred cleanups never ran): the marker and a
// half-written target with a fresh mtime are in the tree. The next build removes the
// target, keeps the sources and the complete older outputs, and says so.
func TestBuildAfterKmodvmWasKilled(t *testing.T) {
	b, _, pl := newTestBuilder(t)
	if _, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}}); err != nil {
		t.Fatal(err)
	}
	tree := treeOf(t, b)
	older := filepath.Join(tree, "kernel/fork.o")
	olderData, _ := os.ReadFile(older)
	writeFile(t, filepath.Join(tree, buildingMarker), "")
	gen := "rust/uapi/uapi_generated.rs"
	writeFile(t, filepath.Join(tree, gen), "") // the redirection ran, bindgen did not
	res, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{"CONFIG_CONFIGFS_FS=y"}}})
	if err != nil {
		t.Fatalf("build after kmodvm was killed: %v\nprogress:\n%s", err, pl.text())
	}
	if !strings.Contains(pl.text(), "recover: ") || !strings.Contains(pl.text(), gen) {
		t.Errorf("the recovery was not reported:\n%s", pl.text())
	}
	checkTreeAfterRecovery(t, tree, gen)
	if data, err := os.ReadFile(older); err != nil || string(data) != string(olderData) {
		t.Errorf("an output older than the marker was not kept: %q, %v", data, err)
	}
	if _, err := os.Stat(res.Bzimage()); err != nil {
		t.Error(err)
	}
}

// cancelWhenPaused makes the fake make pause at point and returns a context cancelled as
// soon as it did.
func cancelWhenPaused(t *testing.T, tree, point string) context.Context {
	t.Helper()
	writeFile(t, filepath.Join(tree, ".fake-pause-"+point), "")
	if err := mkfifo(filepath.Join(tree, ".fake-resume")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		tick := newTicker()
		defer tick.Stop()
		for !exists(filepath.Join(tree, ".fake-paused-"+point)) {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		cancel()
	}()
	t.Cleanup(func() { os.Remove(filepath.Join(tree, ".fake-resume")) })
	return ctx
}

func checkTreeAfterRecovery(t *testing.T, tree, gen string) {
	t.Helper()
	if data, err := os.ReadFile(filepath.Join(tree, gen)); err != nil || len(data) == 0 {
		t.Errorf("%s after the build: %q, %v", gen, data, err)
	}
	if data, err := os.ReadFile(filepath.Join(tree, "kernel/fork.c")); err != nil || string(data) != "int fork;\n" {
		t.Errorf("a source was touched: %q, %v", data, err)
	}
	if exists(filepath.Join(tree, buildingMarker)) {
		t.Errorf("the in-progress marker is still there after a complete build")
	}
}

// treeOf returns the single build tree in b's cache.
func treeOf(t *testing.T, b *Builder) string {
	t.Helper()
	trees, _ := filepath.Glob(filepath.Join(b.Cache, "trees", "*"))
	var dirs []string
	for _, d := range trees {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) != 1 {
		t.Fatalf("build trees: %v", dirs)
	}
	return dirs[0]
}

// What recovery removes: files written since the marker, except kmodvm's bookkeeping, except
// Kconfig's outputs (written whole; removing auto.conf rebuilds everything), and except sources
// of an unpacked tree; a mirrored local tree's "sources" come back with the next mirror.
func TestRecoverInterrupted(t *testing.T) {
	for _, unpacked := range []bool{true, false} {
		tree := t.TempDir()
		writeFile(t, filepath.Join(tree, "old.o"), "complete")
		writeFile(t, filepath.Join(tree, "src.c"), "source")
		old := time.Now().Add(-time.Hour)
		os.Chtimes(filepath.Join(tree, "old.o"), old, old)
		os.Chtimes(filepath.Join(tree, "src.c"), old, old)
		if err := writeManifest(tree, []string{"src.c", "gen.rs"}); err != nil {
			t.Fatal(err)
		}
		if unpacked {
			writeFile(t, filepath.Join(tree, unpackedMarker), "package:x")
		}
		writeFile(t, filepath.Join(tree, buildingMarker), "")
		marked, _ := os.Stat(filepath.Join(tree, buildingMarker))
		later := marked.ModTime().Add(time.Second)
		kconfig := []string{"include/config/auto.conf", "include/config/auto.conf.cmd", "include/config/LOG_BUF_SHIFT", "include/generated/autoconf.h", "include/generated/rustc_cfg"}
		for _, f := range append([]string{"half.o", "gen.rs", ".kmodvm-steps", "include/config/auto.conf.tmp", "include/generated/utsrelease.h"}, kconfig...) {
			writeFile(t, filepath.Join(tree, f), "")
			os.Chtimes(filepath.Join(tree, f), later, later)
		}
		b := &Builder{}
		if err := b.recoverInterrupted(tree); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{"old.o": true, "src.c": true, ".kmodvm-steps": true, "half.o": false, "gen.rs": unpacked, buildingMarker: false,
			"include/config/auto.conf.tmp": false, "include/generated/utsrelease.h": false}
		for _, f := range kconfig {
			want[f] = true
		}
		for f, kept := range want {
			if got := exists(filepath.Join(tree, f)); got != kept {
				t.Errorf("unpacked=%v: %s kept = %v, want %v", unpacked, f, got, kept)
			}
		}
	}
}
