package kernel

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// moduleH is a patch of the fake kernel's include/linux/module.h (fakeKernelSource) that
// also adds a header.
const moduleH = `diff --git a/include/linux/module.h b/include/linux/module.h
--- a/include/linux/module.h
+++ b/include/linux/module.h
@@ -1 +1,2 @@
 #define MODULE
+#define PATCHED 1
diff --git a/include/linux/added.h b/include/linux/added.h
new file mode 100644
--- /dev/null
+++ b/include/linux/added.h
@@ -0,0 +1 @@
+int added(void);
`

// writePatch writes a patch file in a project directory and returns the directory.
func writePatch(t *testing.T, name, text string) string {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, name), text)
	return dir
}

// A patched kernel: its own cache entry, whose staged tree has the patched headers, while
// the shared tree is back to the source after the build; the same patch again is a hit.
func TestBuildWithPatches(t *testing.T) {
	b, root, pl := newTestBuilder(t)
	plain, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}})
	if err != nil {
		t.Fatal(err)
	}
	dir := writePatch(t, "0001-patched.patch", moduleH)
	req := Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{BaseDir: dir}, Patches: []string{"0001-patched.patch"}}
	res, err := b.Build(t.Context(), req)
	if err != nil {
		t.Fatalf("patched build: %v\nprogress:\n%s", err, pl.text())
	}
	if res.Key == plain.Key || res.ConfigHash == plain.ConfigHash {
		t.Errorf("the patched kernel is the plain one: key %s, config %s (LOCALVERSION must differ)", res.Key, res.ConfigHash)
	}
	for rel, want := range map[string]string{"include/linux/module.h": "#define MODULE\n#define PATCHED 1\n", "include/linux/added.h": "int added(void);\n"} {
		if got, err := os.ReadFile(filepath.Join(res.KDir(), rel)); err != nil || string(got) != want {
			t.Errorf("staged %s = %q, %v; want %q", rel, got, err, want)
		}
	}
	tree := treeOf(t, b)
	if got, _ := os.ReadFile(filepath.Join(tree, "include/linux/module.h")); string(got) != "#define MODULE\n" {
		t.Errorf("the tree keeps the patch after the build: %q", got)
	}
	for _, rel := range []string{"include/linux/added.h", journalDir} {
		if exists(filepath.Join(tree, rel)) {
			t.Errorf("the tree keeps %s after the build", rel)
		}
	}
	made := len(root.makeTargets(t))
	hit, err := b.Build(t.Context(), req)
	if err != nil || !hit.Cached || hit.Key != res.Key {
		t.Errorf("the same patch again = %+v, %v; want a cache hit", hit, err)
	}
	if n := len(root.makeTargets(t)); n != made {
		t.Errorf("a cache hit ran make: %v", root.makeTargets(t)[made:])
	}
}

// A patch that does not apply stops before any Kconfig run, as a config error naming the
// patch; no cache entry is made and the shared tree is clean for the next variant.
func TestBuildPatchDoesNotApply(t *testing.T) {
	b, root, _ := newTestBuilder(t)
	dir := writePatch(t, "bad.patch", strings.Replace(moduleH, " #define MODULE", " #define MODULE_X", 1))
	_, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{BaseDir: dir}, Patches: []string{"bad.patch"}})
	var pe *PatchError
	var ce *ConfigError
	if !errors.As(err, &pe) || !errors.As(err, &ce) || !strings.Contains(err.Error(), filepath.Join(dir, "bad.patch")) {
		t.Fatalf("err = %v, want a PatchError naming bad.patch", err)
	}
	for _, target := range root.makeTargets(t) {
		if target == "allnoconfig" || target == "all" {
			t.Errorf("make %s ran for a patch that does not apply", target)
		}
	}
	if entries, _ := filepath.Glob(filepath.Join(b.Cache, "builds", "*")); len(entries) > 0 {
		t.Errorf("cache entries after a failed patch: %v", entries)
	}
	tree := treeOf(t, b)
	if exists(filepath.Join(tree, "include/linux/added.h")) || exists(filepath.Join(tree, journalDir)) {
		t.Error("the tree keeps what the failed series changed")
	}
	if _, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}}); err != nil {
		t.Errorf("the next variant: %v", err)
	}
}

// A local tree source is patched in its mirror only: the user's tree never changes, and the
// mirror is the source again after the build.
func TestBuildPatchesLeaveTheLocalTreeAlone(t *testing.T) {
	root := newFakeRoot(t)
	src := filepath.Join(t.TempDir(), "linux")
	fakeKernelSource(t, src)
	before := snapshot(t, src)
	b := &Builder{Root: root, RootHash: "roothash", Cache: t.TempDir()}
	dir := writePatch(t, "p.patch", moduleH)
	res, err := b.Build(t.Context(), Request{Source: Source{Kind: SourceTree, Path: src}, Config: ConfigSpec{BaseDir: dir}, Patches: []string{"p.patch"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(res.KDir(), "include/linux/module.h")); !strings.Contains(string(got), "PATCHED") {
		t.Errorf("the staged tree lacks the patch: %q", got)
	}
	if after := snapshot(t, src); after != before {
		t.Errorf("the local tree changed:\n%s", after)
	}
	if got, _ := os.ReadFile(filepath.Join(treeOf(t, b), "include/linux/module.h")); string(got) != "#define MODULE\n" {
		t.Errorf("the mirror keeps the patch: %q", got)
	}
}

// kmodvm killed during a patched build (make with it) leaves the patches in the tree and
// the in-progress marker; the next build, of the plain kernel, takes them out before
// anything else and builds the kernel from the source's text.
func TestBuildKilledWithPatches(t *testing.T) {
	b, _, _ := newTestBuilder(t)
	dir := writePatch(t, "p.patch", moduleH)
	req := Request{Source: Source{Kind: SourcePackage}, Config: ConfigSpec{BaseDir: dir}, Patches: []string{"p.patch"}}
	p, err := b.identify(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := b.useTree(t.Context(), req, p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.applyVariant(p); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(p.tree, buildingMarker), "") // make started, then all died
	unlock()
	tree := treeOf(t, b)
	res, err := b.Build(t.Context(), Request{Source: Source{Kind: SourcePackage}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(res.KDir(), "include/linux/module.h")); string(got) != "#define MODULE\n" {
		t.Errorf("the plain kernel was built with the patch: %q", got)
	}
	if exists(filepath.Join(tree, "include/linux/added.h")) || exists(filepath.Join(tree, journalDir)) || exists(filepath.Join(tree, touchedList)) {
		t.Error("the tree keeps the killed build's patches or bookkeeping")
	}
}

// kernel.bindings: the headers reach bindgen's input for the variant, the build checks
// each one got an item into the bindings and warns about those that did not, naming the
// option; the tree's bindings_helper.h is the source's again after the build.
func TestBuildWithBindings(t *testing.T) {
	root := newFakeRoot(t)
	src := filepath.Join(t.TempDir(), "linux")
	fakeKernelSource(t, src)
	const helper = "#include <linux/slab.h>\n"
	writeFile(t, filepath.Join(src, bindingsHelper), helper)
	writeFile(t, filepath.Join(src, "include/linux/iio/iio.h"), "int iio_device_register(void);\n")
	writeFile(t, filepath.Join(src, "include/linux/gpio/driver.h"), "#ifdef CONFIG_GPIOLIB\nint gpiochip_add(void);\n#endif\n")
	pl := &progressLog{}
	b := &Builder{Root: root, RootHash: "roothash", Cache: t.TempDir(), Progress: pl.add}
	res, err := b.Build(t.Context(), Request{Source: Source{Kind: SourceTree, Path: src}, Bindings: []string{"linux/iio/iio.h", "linux/gpio/driver.h"}})
	if err != nil {
		t.Fatalf("build: %v\nprogress:\n%s", err, pl.text())
	}
	tree := treeOf(t, b)
	rs, _ := os.ReadFile(filepath.Join(tree, bindingsGenerated))
	if !strings.Contains(string(rs), "pub fn iio_device_register(") {
		t.Errorf("bindings_generated.rs lacks the header's function:\n%s", rs)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "linux/gpio/driver.h") || !strings.Contains(res.Warnings[0], "CONFIG_GPIOLIB") {
		t.Errorf("warnings = %q, want one about linux/gpio/driver.h naming CONFIG_GPIOLIB", res.Warnings)
	}
	if !strings.Contains(pl.text(), "bindings: kernel.bindings: none of what linux/gpio/driver.h") {
		t.Errorf("the warning was not reported:\n%s", pl.text())
	}
	if got, _ := os.ReadFile(filepath.Join(tree, bindingsHelper)); string(got) != helper {
		t.Errorf("the tree's bindings_helper.h after the build = %q", got)
	}
	hit, err := b.Build(t.Context(), Request{Source: Source{Kind: SourceTree, Path: src}, Bindings: []string{"linux/iio/iio.h", "linux/gpio/driver.h"}})
	if err != nil || !hit.Cached || len(hit.Warnings) != 1 {
		t.Errorf("cache hit = %+v, %v; want the warning kept", hit, err)
	}
	if n := strings.Count(pl.text(), "none of what linux/gpio/driver.h"); n != 2 {
		t.Errorf("the warning was reported %d times over a build and a cache hit, want 2", n)
	}
	plain, err := b.Build(t.Context(), Request{Source: Source{Kind: SourceTree, Path: src}})
	if err != nil || plain.Key == res.Key {
		t.Errorf("without bindings = %+v, %v; want another kernel", plain, err)
	}
}
