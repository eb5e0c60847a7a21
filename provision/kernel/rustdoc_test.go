package kernel

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// buildTwoVariants builds the plain kernel and a patched one (the tree's last build), and
// returns them with the patched one's request.
func buildTwoVariants(t *testing.T, b *Builder) (plain, patched *Result, patchedReq Request) {
	t.Helper()
	plain, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}})
	if err != nil {
		t.Fatal(err)
	}
	dir := writePatch(t, "0001-patched.patch", moduleH)
	patchedReq = Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{BaseDir: dir}, Patches: []string{"0001-patched.patch"}}
	if patched, err = b.Build(t.Context(), patchedReq); err != nil {
		t.Fatal(err)
	}
	return plain, patched, patchedReq
}

func localVersion(t *testing.T, k *Result) string {
	t.Helper()
	data, err := os.ReadFile(k.ConfigFile())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "CONFIG_LOCALVERSION=") {
			return l
		}
	}
	t.Fatalf("%s has no LOCALVERSION", k.ConfigFile())
	return ""
}

// checkTreeClean fails unless the tree is the source again: no patch, no journal, no
// rustdoc output, no in-progress marker.
func checkTreeClean(t *testing.T, tree string) {
	t.Helper()
	if got, _ := os.ReadFile(filepath.Join(tree, "include/linux/module.h")); string(got) != "#define MODULE\n" {
		t.Errorf("the tree keeps the patch: module.h = %q", got)
	}
	for _, rel := range []string{"include/linux/added.h", journalDir, buildingMarker, "Documentation/output"} {
		if exists(filepath.Join(tree, rel)) {
			t.Errorf("the tree keeps %s", rel)
		}
	}
	if !exists(filepath.Join(tree, "Documentation/rust/doc.rst")) {
		t.Error("the source's Documentation/ went with rustdoc's output")
	}
}

// Each kernel's documentation is made with that kernel's variant in the shared tree (its
// .config, its patches), whichever variant the tree built last, and the tree is the source
// again afterwards.
func TestRustdocVariant(t *testing.T) {
	b, root, pl := newTestBuilder(t)
	plain, patched, patchedReq := buildTwoVariants(t, b)
	tree := treeOf(t, b)
	for _, tc := range []struct {
		name    string
		req     Request
		k       *Result
		patched bool
	}{
		{"plain", Request{Source: Source{Kind: SourcePackage}}, plain, false},
		{"patched", patchedReq, patched, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "rust")
			var log strings.Builder
			if err := b.Rustdoc(t.Context(), tc.req, tc.k, &log, dst); err != nil {
				t.Fatalf("rustdoc: %v\nprogress:\n%s", err, pl.text())
			}
			html, err := os.ReadFile(filepath.Join(dst, "kernel", "index.html"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(html), localVersion(t, tc.k)) {
				t.Errorf("rustdoc read crates built with another .config than the kernel's (%s):\n%s", localVersion(t, tc.k), html)
			}
			if got := strings.Contains(string(html), "PATCHED"); got != tc.patched {
				t.Errorf("rustdoc saw the patch: %v, want %v:\n%s", got, tc.patched, html)
			}
			for _, f := range []string{"static.files/rustdoc.css", "src/kernel/alloc/kbox.rs.html"} {
				if !exists(filepath.Join(dst, f)) {
					t.Errorf("the documentation lacks %s", f)
				}
			}
			if !strings.Contains(log.String(), "RUSTDOC rust/kernel/lib.rs") {
				t.Errorf("make's output is not in the log: %q", log.String())
			}
			checkTreeClean(t, tree)
		})
	}
	if !strings.Contains(pl.text(), "rustdoc: RUSTDOC rust/kernel/lib.rs") {
		t.Errorf("no rustdoc progress in:\n%s", pl.text())
	}
	// Each time rust/ first: rustdoc reads the crates it builds, which must be this kernel's.
	if got := strings.Join(root.makeTargets(t), " "); strings.Count(got, "rust/ rustdoc") != 2 || strings.Count(got, "rustdoc") != 2 {
		t.Errorf("make ran %s; want rust/ then rustdoc, twice", got)
	}
}

// A request that builds another kernel than the one to document runs nothing.
func TestRustdocOtherKernel(t *testing.T) {
	b, root, _ := newTestBuilder(t)
	plain, _, patchedReq := buildTwoVariants(t, b)
	dst := filepath.Join(t.TempDir(), "rust")
	err := b.Rustdoc(t.Context(), patchedReq, plain, &strings.Builder{}, dst)
	if !errors.Is(err, ErrOtherKernel) || !strings.Contains(err.Error(), plain.Key) {
		t.Fatalf("err = %v, want ErrOtherKernel naming %s", err, plain.Key)
	}
	if slices.Contains(root.makeTargets(t), "rustdoc") || exists(dst) {
		t.Error("rustdoc ran for another kernel")
	}
	checkTreeClean(t, treeOf(t, b))
}

// A rustdoc that fails says so with make's last lines; nothing is kept and the tree is
// clean. One that is stopped (Ctrl-C) leaves the same.
func TestRustdocFailsOrIsStopped(t *testing.T) {
	b, _, _ := newTestBuilder(t)
	_, patched, patchedReq := buildTwoVariants(t, b)
	tree := treeOf(t, b)

	writeFile(t, filepath.Join(tree, ".fake-rustdoc-fail"), "")
	dst := filepath.Join(t.TempDir(), "rust")
	var log strings.Builder
	err := b.Rustdoc(t.Context(), patchedReq, patched, &log, dst)
	if err == nil || !strings.Contains(err.Error(), "make rustdoc failed") || !strings.Contains(err.Error(), "unresolved link to Foo") {
		t.Fatalf("err = %v, want make rustdoc failed with its last lines", err)
	}
	if !strings.Contains(log.String(), "unresolved link to Foo") {
		t.Errorf("the log lacks make's error: %q", log.String())
	}
	if exists(dst) {
		t.Error("a failed rustdoc left its destination")
	}
	checkTreeClean(t, tree)
	os.Remove(filepath.Join(tree, ".fake-rustdoc-fail"))

	if err := mkfifo(filepath.Join(tree, ".fake-resume")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tree, ".fake-pause-rustdoc"), "")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		waitUntil(t, "rustdoc to start", func() bool { return exists(filepath.Join(tree, ".fake-paused-rustdoc")) })
		cancel()
	}()
	err = b.Rustdoc(ctx, patchedReq, patched, &strings.Builder{}, dst)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want interrupted", err)
	}
	if exists(dst) {
		t.Error("a stopped rustdoc left its destination")
	}
	checkTreeClean(t, tree)
}
