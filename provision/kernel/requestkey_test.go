package kernel

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRequestKey: the key a CI caches under changes whenever the kernel's own cache key does
// (checked against cacheKey over every pair of requests below, with the root fixed), and stays
// when only the way a request is written changes.
func TestRequestKey(t *testing.T) {
	tree := filepath.Join("testdata", "tree")
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("kasan.config", "CONFIG_KASAN=y\n")
	write("kasan-commented.config", "# more checks\nCONFIG_KASAN=y\n\n")
	write("kfence.config", "CONFIG_KFENCE=y\n")
	write("a.patch", "--- a/kernel/fork.c\n+++ b/kernel/fork.c\n@@ -1 +1 @@\n-int fork;\n+int fork = 1;\n")
	write("b.patch", "--- a/kernel/fork.c\n+++ b/kernel/fork.c\n@@ -1 +1 @@\n-int fork;\n+int fork = 2;\n")
	if err := os.MkdirAll(filepath.Join(dir, "copy"), 0o755); err != nil {
		t.Fatal(err)
	}
	write("copy/a.patch", "--- a/kernel/fork.c\n+++ b/kernel/fork.c\n@@ -1 +1 @@\n-int fork;\n+int fork = 1;\n")
	const root, otherRoot = "root-a", "root-b"
	tc := map[string]string{"rustc": "rustc 1.97.1"}
	type request struct {
		name string
		root string
		req  Request
	}
	pkg := Source{Kind: SourcePackage}
	spec := func(base string, frags ...string) ConfigSpec {
		return ConfigSpec{Base: base, Fragments: frags, BaseDir: dir}
	}
	debug := func(s ConfigSpec) ConfigSpec {
		s.Debug = true
		return s
	}
	reqs := []request{
		{"default", root, Request{Source: pkg, Config: spec("")}},
		{"explicit small base", root, Request{Source: pkg, Config: spec(BaseSmall)}},
		{"fragment kmodvm already sets", root, Request{Source: pkg, Config: spec("", "CONFIG_RUST=y")}},
		{"defconfig base", root, Request{Source: pkg, Config: spec(BaseDefconfig)}},
		{"inline fragment", root, Request{Source: pkg, Config: spec("", "CONFIG_KASAN=y")}},
		{"same fragment in a file", root, Request{Source: pkg, Config: spec("", "kasan.config")}},
		{"same file with a comment", root, Request{Source: pkg, Config: spec("", "./kasan-commented.config")}},
		{"other file", root, Request{Source: pkg, Config: spec("", "kfence.config")}},
		{"in-tree fragment", root, Request{Source: pkg, Config: spec("", "debug.config")}},
		{"two fragments", root, Request{Source: pkg, Config: spec("", "kasan.config", "kfence.config")}},
		{"tarball", root, Request{Source: Source{Kind: SourceTarball, SHA256: "aa"}, Config: spec("")}},
		{"other tarball", root, Request{Source: Source{Kind: SourceTarball, SHA256: "bb"}, Config: spec("")}},
		{"other root", otherRoot, Request{Source: pkg, Config: spec("")}},
		{"debug variant", root, Request{Source: pkg, Config: debug(spec(""))}},
		{"debug variant with a fragment", root, Request{Source: pkg, Config: debug(spec("", "kasan.config"))}},
		{"debug fragment without the variant", root, Request{Source: pkg, Config: spec("", string(debugConfig))}},
		{"debug variant and its own fragment", root, Request{Source: pkg, Config: debug(spec("", string(debugConfig)))}},
		{"a patch", root, Request{Source: pkg, Config: spec(""), Patches: []string{"a.patch"}}},
		{"the same patch elsewhere", root, Request{Source: pkg, Config: spec(""), Patches: []string{"./copy/a.patch"}}},
		{"another patch", root, Request{Source: pkg, Config: spec(""), Patches: []string{"b.patch"}}},
		{"two patches", root, Request{Source: pkg, Config: spec(""), Patches: []string{"a.patch", "b.patch"}}},
		{"two patches the other way round", root, Request{Source: pkg, Config: spec(""), Patches: []string{"b.patch", "a.patch"}}},
		{"bindings", root, Request{Source: pkg, Config: spec(""), Bindings: []string{"linux/iio/iio.h"}}},
		{"other bindings", root, Request{Source: pkg, Config: spec(""), Bindings: []string{"linux/gpio/driver.h"}}},
	}
	// What Build would compute once the root is there: the package version and the tool
	// versions are the root's, so they differ exactly when the root does.
	realKey := func(r request) string {
		t.Helper()
		srcID := "package:linux-source-7.2=" + r.root
		if r.req.Source.Kind == SourceTarball {
			srcID = "tarball:" + r.req.Source.SHA256
		}
		patches, err := readPatches(r.req.Patches, dir)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		variant := variantParts(patches, r.req.Bindings)
		plan, err := PlanConfig(r.req.Config, tree, planID(srcID, variant))
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		return cacheKey(srcID, plan, map[string]string{"rustc": tc["rustc"], "root": r.root}, variant...)
	}
	if realKey(reqs[13]) == realKey(reqs[0]) {
		t.Error("the debug variant has the plain kernel's cache key")
	}
	// Patches count by content and order, bindings by name: each is a kernel of its own.
	for i, a := range []int{0, 17, 19, 20, 21, 22, 23} {
		for _, b := range []int{0, 17, 19, 20, 21, 22, 23}[i+1:] {
			if realKey(reqs[a]) == realKey(reqs[b]) {
				t.Errorf("%q and %q share the cache key", reqs[a].name, reqs[b].name)
			}
		}
	}
	reqKey := func(r request) string {
		t.Helper()
		k, err := RequestKey(t.Context(), r.req, r.root)
		if err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
		return k
	}
	for i, a := range reqs {
		for _, b := range reqs[i+1:] {
			if realKey(a) != realKey(b) && reqKey(a) == reqKey(b) {
				t.Errorf("%q and %q build different kernels but share the request key %s", a.name, b.name, reqKey(a))
			}
		}
	}
	// The ways of writing one request that must not cost a CI a cold cache.
	same := [][2]int{{0, 1}, {0, 2}, {4, 5}, {4, 6}, {13, 16}, {17, 18}}
	for _, p := range same {
		if a, b := reqs[p[0]], reqs[p[1]]; reqKey(a) != reqKey(b) {
			t.Errorf("%q and %q are one kernel, yet their request keys differ", a.name, b.name)
		}
	}
}

// TestRequestKeyErrors: a fragment file that is named but missing, or unreadable as a
// fragment, fails the key as it would fail the build.
func TestRequestKeyErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.config"), []byte("not a config line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, frag := range []string{"./missing.config", "bad.config"} {
		_, err := RequestKey(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{Fragments: []string{frag}, BaseDir: dir}}, "root")
		if err == nil {
			t.Errorf("fragment %q: no error", frag)
		}
	}
}
