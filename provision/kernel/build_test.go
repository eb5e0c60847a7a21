package kernel

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/bindindex"
)

// The whole flow on a fake toolchain: unpack, gate, config, verify, make, install, stage,
// publish; then a cache hit that runs no make at all.
func TestBuildAndCacheHit(t *testing.T) {
	b, root, pl := newTestBuilder(t)
	res, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}})
	if err != nil {
		t.Fatalf("build: %v\nprogress:\n%s", err, pl.text())
	}
	if res.Cached || res.Release != "7.2.13-kmodvm" || res.Key == "" {
		t.Errorf("result = %+v", res)
	}
	for _, p := range []string{res.Bzimage(), res.ConfigFile(), res.Log(), filepath.Join(res.ModulesDir(), "kernel/samples/rust/rust_minimal.ko"),
		filepath.Join(res.KDir(), "Module.symvers"), filepath.Join(res.KDir(), "rust/kernel.rmeta"), filepath.Join(res.KDir(), "include/linux/module.h")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the entry lacks %s: %v", p, err)
		}
	}
	// The bindings are indexed, with the kernel crate's uses, in the entry.
	ix, err := bindindex.Load(res.BindingsDir())
	if err != nil {
		t.Fatal(err)
	}
	if hits := ix.Lookup("kfree"); len(hits) != 1 || len(hits[0].Uses) != 1 || hits[0].Uses[0].Impl != "impl<T> Drop for Box<T>" {
		t.Errorf("the entry's index finds kfree as %+v; want it with its use in Box's Drop", hits)
	} else if _, err := os.Stat(ix.Path(hits[0].Uses[0].File)); err != nil {
		t.Errorf("the entry lacks the kernel crate's source of a use: %v", err)
	}
	if hits := ix.Lookup("refcount_inc"); len(hits) != 1 || hits[0].Helper != "rust_helper_refcount_inc" {
		t.Errorf("the entry's index finds refcount_inc as %+v; want the helper", hits)
	}
	// The Rust sources an editor reads, generated ones too; nothing else of rust/.
	for _, p := range []string{"rust/kernel/lib.rs", "rust/kernel/alloc/kbox.rs", "rust/bindings/bindings_generated.rs"} {
		if _, err := os.Stat(filepath.Join(res.RustSrcDir(), p)); err != nil {
			t.Errorf("the entry's Rust sources lack %s: %v", p, err)
		}
	}
	if _, err := os.Stat(filepath.Join(res.RustSrcDir(), "rust/kernel.rmeta")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the entry's Rust sources have rust/kernel.rmeta (%v); want only .rs files", err)
	}
	if l, err := os.Readlink(filepath.Join(res.ModulesDir(), "build")); err != nil || l != GuestTree {
		t.Errorf("modules build link = %q, %v", l, err)
	}
	cfg, _ := os.ReadFile(res.ConfigFile())
	if !strings.Contains(string(cfg), "CONFIG_RUST=y") {
		t.Errorf("config lacks CONFIG_RUST=y")
	}
	for _, phase := range []string{"unpack", "config", "make", "build", "install", "stage"} {
		if !strings.Contains(pl.text(), phase+": ") {
			t.Errorf("no %s progress in:\n%s", phase, pl.text())
		}
	}
	made := len(root.makeTargets(t))

	again, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cached || again.Key != res.Key || again.Dir != res.Dir {
		t.Errorf("second build = %+v, want the cached %s", again, res.Key)
	}
	if n := len(root.makeTargets(t)); n != made {
		t.Errorf("a cache hit ran make %d times: %v", n-made, root.makeTargets(t)[made:])
	}
	if tmps, _ := filepath.Glob(filepath.Join(b.Cache, "builds", ".tmp-*")); len(tmps) > 0 {
		t.Errorf("temporary entries left: %v", tmps)
	}
}

// Two builds of one source at once: the second waits for the first to finish with the
// tree, and never unpacks into it while the first does.
func TestConcurrentBuildsShareTheTreeInTurn(t *testing.T) {
	b1, root, pl1 := newTestBuilder(t)
	// tar stand-in: records an unpack that overlaps another, pauses the first until resumed.
	realTar, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no tar")
	}
	tarShim := filepath.Join(root.dir, "tar")
	writeFile(t, tarShim, `#!/bin/sh
if ! mkdir "`+root.dir+`/unpacking" 2>/dev/null; then echo overlap >> "`+root.dir+`/overlaps"; exit 1; fi
if [ ! -e "`+root.dir+`/paused-once" ]; then
	touch "`+root.dir+`/paused-once"
	cat "`+root.dir+`/resume" > /dev/null
fi
"`+realTar+`" "$@"; rc=$?
rmdir "`+root.dir+`/unpacking"
exit $rc
`)
	os.Chmod(tarShim, 0o755)
	if err := mkfifo(filepath.Join(root.dir, "resume")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", root.dir+":"+os.Getenv("PATH"))
	pl2 := &progressLog{}
	b2 := *b1
	b2.Progress = pl2.add

	errs := make(chan error, 2)
	go func() { _, err := b1.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}}); errs <- err }()
	waitUntil(t, "the first unpack to start", func() bool { return exists(filepath.Join(root.dir, "paused-once")) })
	go func() { _, err := b2.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}}); errs <- err }()
	waitUntil(t, "the second build to wait or to unpack", func() bool {
		return exists(filepath.Join(root.dir, "overlaps")) || strings.Contains(pl2.text(), "waiting")
	})
	if err := os.WriteFile(filepath.Join(root.dir, "resume"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("build: %v\nfirst:\n%s\nsecond:\n%s", err, pl1.text(), pl2.text())
		}
	}
	if exists(filepath.Join(root.dir, "overlaps")) {
		t.Errorf("the second build unpacked into the tree while the first did")
	}
}

// A config that loses CONFIG_RUST in Kconfig fails verification before make runs, with
// rustavailable's word on why; a toolchain that cannot build Rust fails the gate.
func TestBuildRefusals(t *testing.T) {
	cases := []struct {
		name  string
		steer string // file put in the tree after the first build
		want  []string
	}{
		{"Kconfig drops RUST", ".fake-drop", []string{"RUST", "rustavailable", "Rust is available!"}},
		{"no Rust toolchain", ".fake-no-rust", []string{"cannot build Rust kernel code", "bindgen' is too old", "hint:"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, root, _ := newTestBuilder(t)
			if _, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}}); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(treeOf(t, b), tc.steer), "RUST")
			made := len(root.makeTargets(t))
			_, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{"CONFIG_CONFIGFS_FS=y"}}})
			if err == nil {
				t.Fatal("the build succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			for _, target := range root.makeTargets(t)[made:] {
				if target == "all" {
					t.Errorf("make all ran after a refusal")
				}
			}
			if exists(filepath.Join(treeOf(t, b), buildingMarker)) {
				t.Errorf("a refused build left the in-progress marker")
			}
		})
	}
}

// An unknown option is refused before any Kconfig run, as a config error.
func TestBuildUnknownOption(t *testing.T) {
	b, root, _ := newTestBuilder(t)
	_, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{"CONFIG_NO_SUCH_THING=y"}}})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "NO_SUCH_THING") {
		t.Fatalf("err = %v, want a ConfigError naming the option", err)
	}
	for _, target := range root.makeTargets(t) {
		if target == "allnoconfig" || target == "all" {
			t.Errorf("make %s ran for an unknown option", target)
		}
	}
}

// Variants: each config is its own cache entry, built incrementally in the one tree of
// the source; the defconfig base goes through x86_64_defconfig and olddefconfig.
func TestVariantsShareTheTree(t *testing.T) {
	b, root, pl := newTestBuilder(t)
	reqs := map[string]Request{
		"small":     {Source: Source{Kind: SourcePackage}},
		"configfs":  {Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{"CONFIG_CONFIGFS_FS=y"}}},
		"defconfig": {Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Base: BaseDefconfig}},
	}
	keys := map[string]string{}
	for name, req := range reqs {
		res, err := b.Build(t.Context(), req)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for other, k := range keys {
			if k == res.Key {
				t.Errorf("%s and %s share the key %s", name, other, k)
			}
		}
		keys[name] = res.Key
		if base := res.Base; (name == "defconfig") != (base == BaseDefconfig) {
			t.Errorf("%s: base %s", name, base)
		}
	}
	treeOf(t, b) // exactly one tree
	if n := strings.Count(pl.text(), "unpack: "); n != 1 {
		t.Errorf("the source was unpacked %d times", n)
	}
	targets := strings.Join(root.makeTargets(t), " ")
	for _, want := range []string{"x86_64_defconfig", "olddefconfig"} {
		if !strings.Contains(targets, want) {
			t.Errorf("no make %s in %s", want, targets)
		}
	}
	for name, req := range reqs { // each a cache hit now
		got, err := b.Build(t.Context(), req)
		if err != nil || got == nil || got.Key != keys[name] {
			t.Errorf("Build(%s) again = %+v, %v", name, got, err)
		}
	}
}

// A local kernel tree is mirrored into the build tree; an edit (even a new untracked file)
// makes a new kernel, and the mirror drops files removed from the source.
func TestBuildLocalTree(t *testing.T) {
	root := newFakeRoot(t)
	src := filepath.Join(t.TempDir(), "linux")
	fakeKernelSource(t, src)
	b := &Builder{Root: root, RootHash: "roothash", Cache: t.TempDir()}
	req := Request{Source: Source{Kind: SourceTree, Path: src}}
	first, err := b.Build(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	tree := treeOf(t, b)
	if data, err := os.ReadFile(filepath.Join(tree, "kernel/fork.c")); err != nil || string(data) != "int fork;\n" {
		t.Fatalf("mirrored source: %q, %v", data, err)
	}
	if again, err := b.Build(t.Context(), req); err != nil || !again.Cached {
		t.Fatalf("unchanged tree: %+v, %v; want a cache hit", again, err)
	}
	writeFile(t, filepath.Join(src, "drivers/new.c"), "int n;\n")
	os.Remove(filepath.Join(src, "drivers/gpu/private.h"))
	second, err := b.Build(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if second.Cached || second.Key == first.Key {
		t.Errorf("an edited tree reused the kernel %s", first.Key)
	}
	if !exists(filepath.Join(tree, "drivers/new.c")) || exists(filepath.Join(tree, "drivers/gpu/private.h")) {
		t.Errorf("the mirror did not follow the source")
	}
}

// CheckConfig generates and verifies the config without building, and reports what the
// request changed relative to the base.
func TestCheckConfig(t *testing.T) {
	b, root, _ := newTestBuilder(t)
	chk, err := b.CheckConfig(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{"CONFIG_CONFIGFS_FS=y"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := chk.Report.Err(); err != nil {
		t.Errorf("report: %v", err)
	}
	if v, _ := chk.Final.Value("CONFIGFS_FS"); v != "y" {
		t.Errorf("final CONFIGFS_FS = %q", v)
	}
	found := false
	for _, c := range chk.Changes {
		found = found || strings.Contains(c.String(), "CONFIGFS_FS")
	}
	if !found {
		t.Errorf("changes lack CONFIGFS_FS: %v", chk.Changes)
	}
	for _, target := range root.makeTargets(t) {
		if target == "all" {
			t.Errorf("CheckConfig ran make all")
		}
	}
	if exists(filepath.Join(chk.Tree, ".config")) {
		t.Errorf("CheckConfig wrote the build's .config")
	}
}

// A built kernel's config check is kept in its cache entry: the first check of it runs the
// Kconfig passes, later ones answer from the entry alike without running make; a kept check
// that does not belong to the entry's config is not used, and a check of a kernel that is
// not built keeps nothing.
func TestCheckConfigKeptForBuiltKernel(t *testing.T) {
	b, root, _ := newTestBuilder(t)
	req := Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{"CONFIG_CONFIGFS_FS=y"}}}
	if _, err := b.CheckConfig(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	if kept, _ := filepath.Glob(filepath.Join(b.Cache, "builds", "*", checkFile)); len(kept) != 0 {
		t.Fatalf("a check of a kernel that is not built was kept: %v", kept)
	}
	res, err := b.Build(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	kept := filepath.Join(res.Dir, checkFile)
	check := func(wantMake bool) *ConfigCheck {
		t.Helper()
		os.Remove(root.calls)
		chk, err := b.CheckConfig(t.Context(), req)
		if err != nil {
			t.Fatal(err)
		}
		if ran := len(root.makeTargets(t)) > 0; ran != wantMake {
			t.Errorf("make ran: %v, want %v (targets %v)", ran, wantMake, root.makeTargets(t))
		}
		if chk.Final.Hash() != res.ConfigHash || chk.Report.Err() != nil || chk.Report.Step == "" || chk.Plan == nil || chk.Tree == "" {
			t.Errorf("check: config %s (built %s), report %v, step %q, plan %v, tree %q", chk.Final.Hash(), res.ConfigHash, chk.Report.Err(), chk.Report.Step, chk.Plan != nil, chk.Tree)
		}
		return chk
	}
	first := check(true)
	if !exists(kept) {
		t.Fatalf("the check of a built kernel was not kept in %s", kept)
	}
	second := check(false)
	if !slices.Equal(first.Changes, second.Changes) || len(second.Changes) == 0 {
		t.Errorf("kept changes %v, checked %v", second.Changes, first.Changes)
	}
	// A kept check of another config is not used, and the check that runs replaces it.
	writeFile(t, kept, `{"config_hash": "other", "changes": []}`)
	if third := check(true); !slices.Equal(third.Changes, first.Changes) {
		t.Errorf("changes after a foreign kept check: %v, want %v", third.Changes, first.Changes)
	}
	check(false)
}

// A kernel build SIGKILLed while publishing left a temporary entry; the next build of any
// kernel sweeps it.
func TestBuildSweepsStaleEntries(t *testing.T) {
	b, _, _ := newTestBuilder(t)
	stale := filepath.Join(b.Cache, "builds", ".tmp-0123456789abcdef-42")
	writeFile(t, filepath.Join(stale, "kdir/Makefile"), "")
	if _, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}}); err != nil {
		t.Fatal(err)
	}
	if exists(stale) {
		t.Errorf("the stale temporary entry is still there")
	}
}

// A tarball source is verified against its sha256, kept in the download cache and unpacked
// once; a wrong checksum leaves nothing behind.
func TestBuildTarball(t *testing.T) {
	root := newFakeRoot(t)
	root.fakePackage(t) // the package tarball serves as a downloaded one
	tarball := filepath.Join(root.dir, "usr/src/linux-source-7.2.tar.xz")
	data, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	sum := fmt.Sprintf("%x", sha256.Sum256(data))
	b := &Builder{Root: root, RootHash: "roothash", Cache: t.TempDir()}

	bad := Request{Source: Source{Kind: SourceTarball, Path: tarball, SHA256: strings.Repeat("0", 64)}}
	if _, err := b.Build(t.Context(), bad); err == nil || !strings.Contains(err.Error(), "nothing was cached") {
		t.Fatalf("wrong checksum: %v", err)
	}
	res, err := b.Build(t.Context(), Request{Source: Source{Kind: SourceTarball, Path: tarball, SHA256: sum}})
	if err != nil {
		t.Fatal(err)
	}
	if res.SourceID != "tarball:"+sum {
		t.Errorf("source = %s", res.SourceID)
	}
	if _, err := os.Stat(filepath.Join(b.Cache, "downloads", sum+".tar.xz")); err != nil {
		t.Errorf("the download cache lacks the tarball: %v", err)
	}
}

// The debug variant: its own cache entry, which keeps vmlinux and says so in info.json (a
// cache hit knows it too), built in its own tree; the plain variant of the same source keeps
// none.
func TestBuildDebugKeepsVmlinux(t *testing.T) {
	b, _, pl := newTestBuilder(t)
	plain, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}})
	if err != nil {
		t.Fatalf("plain build: %v\nprogress:\n%s", err, pl.text())
	}
	dbg, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Debug: true}})
	if err != nil {
		t.Fatalf("debug build: %v\nprogress:\n%s", err, pl.text())
	}
	if dbg.Key == plain.Key || dbg.Release == plain.Release && dbg.ConfigHash == plain.ConfigHash {
		t.Errorf("the debug variant is the plain kernel: %+v", dbg)
	}
	if plain.Debug || plain.Vmlinux() != "" {
		t.Errorf("plain build: Debug=%v Vmlinux=%q", plain.Debug, plain.Vmlinux())
	}
	if _, err := os.Stat(filepath.Join(plain.Dir, "vmlinux")); err == nil {
		t.Error("the plain entry keeps a vmlinux")
	}
	if !dbg.Debug || dbg.Vmlinux() != filepath.Join(dbg.Dir, "vmlinux") {
		t.Fatalf("debug build: Debug=%v Vmlinux=%q", dbg.Debug, dbg.Vmlinux())
	}
	if data, err := os.ReadFile(dbg.Vmlinux()); err != nil || string(data) != "elf\n" {
		t.Errorf("vmlinux in the entry = %q, %v; want the tree's", data, err)
	}
	cfg, _ := os.ReadFile(dbg.ConfigFile())
	for _, want := range []string{"CONFIG_DEBUG_INFO_DWARF5=y", "CONFIG_UNWINDER_ORC=y"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("the debug config lacks %s", want)
		}
	}
	hit, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Debug: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !hit.Cached || hit.Vmlinux() != dbg.Vmlinux() {
		t.Errorf("cache hit: cached=%v vmlinux=%q, want %q", hit.Cached, hit.Vmlinux(), dbg.Vmlinux())
	}
	// Each in a build tree of its own: switching between them rebuilds nothing.
	trees, _ := filepath.Glob(filepath.Join(b.Cache, "trees", "*"))
	var dirs []string
	for _, d := range trees {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dirs = append(dirs, filepath.Base(d))
		}
	}
	if len(dirs) != 2 || !strings.HasSuffix(dirs[0], "-debug") && !strings.HasSuffix(dirs[1], "-debug") {
		t.Errorf("build trees %q, want the plain kernel's and the debug variant's", dirs)
	}
}

// A debug option Kconfig drops (an unmet dependency) fails the build naming it, as the
// other fragments' options do.
func TestBuildDebugOptionDropped(t *testing.T) {
	b, _, _ := newTestBuilder(t)
	// Another debug kernel first, for the debug variants' tree to steer.
	if _, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Debug: true, Fragments: []string{"CONFIG_CONFIGFS_FS=y"}}}); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(treeOf(t, b), ".fake-drop"), "UNWINDER_ORC")
	_, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Debug: true}})
	var ce *ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "UNWINDER_ORC") {
		t.Fatalf("dropped debug option: %v", err)
	}
}

// Lookup finds a built kernel without building: nothing before the build, the entry after.
func TestLookup(t *testing.T) {
	b, root, _ := newTestBuilder(t)
	req := Request{Source: Source{Kind: SourcePackage}}
	if r, err := b.Lookup(t.Context(), req); r != nil || err != nil {
		t.Fatalf("Lookup before any build = %+v, %v; want nothing", r, err)
	}
	res, err := b.Build(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	made := len(root.makeTargets(t))
	r, err := b.Lookup(t.Context(), req)
	if err != nil || r == nil || r.Dir != res.Dir || r.Key != res.Key {
		t.Fatalf("Lookup after the build = %+v, %v; want the entry %s", r, err, res.Dir)
	}
	if n := len(root.makeTargets(t)); n != made {
		t.Errorf("Lookup ran make: %v", root.makeTargets(t)[made:])
	}
	if r, err := b.Lookup(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{"CONFIG_DUMMY=m"}}}); r != nil || err != nil {
		t.Errorf("Lookup of another config = %+v, %v; want nothing", r, err)
	}
	if _, err := Open(t.TempDir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(an empty dir) = %v; want os.ErrNotExist", err)
	}
}

// An entry keeps the Rust sources beside its staged tree, and finds the tree it was built in
// while that holds its sources unpatched: diagnostics point at all three.
func TestEntrySourceDirs(t *testing.T) {
	b, _, _ := newTestBuilder(t)
	res, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}})
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(b.Cache, "trees", Source{Kind: SourcePackage}.treeSlot(b.RootHash, "linux-source-7.2"))
	want := []string{res.RustSrcDir(), res.BindingsDir(), tree}
	if got := res.SourceDirs(); !slices.Equal(got, want) {
		t.Errorf("SourceDirs() = %q, want %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(res.BindingsDir(), "rust/kernel/lib.rs")); err != nil {
		t.Errorf("the kernel crate's sources are not kept: %v", err)
	}

	// A tree with a variant's patches in it holds other sources than this kernel's.
	if err := os.MkdirAll(filepath.Join(tree, journalDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := res.SourceDirs(); !slices.Equal(got, want[:2]) {
		t.Errorf("SourceDirs() with the tree patched = %q, want %q", got, want[:2])
	}
	os.Remove(filepath.Join(tree, journalDir))
	// So does a tree unpacked from another source since.
	if err := os.WriteFile(filepath.Join(tree, unpackedMarker), []byte("package:linux-source-7.3=7.3.1-1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := res.SourceDirs(); !slices.Equal(got, want[:2]) {
		t.Errorf("SourceDirs() with the tree of another source = %q, want %q", got, want[:2])
	}
}
