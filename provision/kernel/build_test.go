package kernel

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
