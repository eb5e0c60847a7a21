package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/bindindex"
)

// markerPatch declares a function no kernel has in include/linux/iio/iio.h: bound after a
// build with it and that header in kernel.bindings, it proves the patch reached bindgen.
const markerPatch = `From: kmodvm e2e <e2e@kmodvm.invalid>
Subject: [PATCH] iio: declare kmodvm_e2e_marker

---
 include/linux/iio/iio.h | 2 ++
 1 file changed, 2 insertions(+)

diff --git a/include/linux/iio/iio.h b/include/linux/iio/iio.h
--- a/include/linux/iio/iio.h
+++ b/include/linux/iio/iio.h
@@ -7,6 +7,8 @@
 #ifndef _INDUSTRIAL_IO_H_
 #define _INDUSTRIAL_IO_H_
 
+int kmodvm_e2e_marker(int x);
+
 #include <linux/align.h>
 #include <linux/device.h>
 #include <linux/cdev.h>
`

// TestE2EBindingsAndPatches: on the real kernel, `bindings` finds a bound struct with the
// kernel crate's uses of it, and for an unbound function names its header, line and the
// kmodvm.yaml lines that bind it; with those lines and a patch, the variant's bindings have
// both the header's function and the patched-in one, the default kernel's still have
// neither, and a patch that does not apply names its hunk and builds nothing.
func TestE2EBindingsAndPatches(t *testing.T) {
	e2eEnv(t)
	ctx := context.Background()
	// No VM of this name exists: bindings searches the kernel kmodvm.yaml selects. (-n would
	// name a VM that must exist.)
	dir := t.TempDir()
	name := fmt.Sprintf("name: e2e-bindings-%d\n", os.Getpid())
	n := []string{"--config", writeE2EFile(t, filepath.Join(dir, "plain.yaml"), name)}
	mustCLI(t, ctx, append([]string{"kernel", "build"}, n...)...)

	res, code := bindingsQuery(t, ctx, append(n, "file_operations")...)
	if code != 0 || !res.Bound {
		t.Fatalf("bindings file_operations: exit %d, bound %v; want it bound", code, res.Bound)
	}
	used := false
	for _, it := range res.Items {
		checkLine(t, it.Path, it.Line, "file_operations")
		used = used || len(it.Uses) > 0
		for _, u := range it.Uses {
			checkLine(t, u.Path, u.Line, "file_operations")
		}
	}
	if !used {
		t.Errorf("bindings file_operations: no use in the kernel crate; want its abstractions (miscdevice, ...)")
	}

	res, code = bindingsQuery(t, ctx, append(n, "iio_device_alloc")...)
	m := res.Missing
	if code != 1 || res.Bound || m == nil || m.Header != "linux/iio/iio.h" || !strings.Contains(m.Config, "bindings: [linux/iio/iio.h]") || len(m.Declarations) == 0 {
		t.Fatalf("bindings iio_device_alloc: exit %d, %+v; want exit 1, header linux/iio/iio.h and the kmodvm.yaml lines", code, res)
	}
	checkLine(t, m.Declarations[0].Path, m.Declarations[0].Line, "iio_device_alloc")
	// The small kernel leaves IIO out: the option that builds drivers/iio/ is named, and the
	// lines to add turn it on.
	if !slices.ContainsFunc(m.Options, func(o bindindex.Option) bool { return o.Symbol == "IIO" && !o.On() }) || !strings.Contains(m.Config, `fragments: ["CONFIG_IIO=y"]`) {
		t.Errorf("bindings iio_device_alloc: options %+v, lines %q; want CONFIG_IIO, off, and a fragment that sets it", m.Options, m.Config)
	}
	if _, code := bindingsQuery(t, ctx, append(n, "kmodvm_e2e_marker")...); code != 1 {
		t.Errorf("bindings kmodvm_e2e_marker on the plain kernel: exit %d, want 1", code)
	}

	// The variant: the header bound, the patch applied.
	vn := []string{"--config", writeE2EVariant(t, dir, name)}
	code, _, stderr := cli(t, ctx, append([]string{"kernel", "build"}, vn...)...)
	if code != 0 {
		t.Fatalf("kernel build with a patch and a binding: exit %d", code)
	}
	if strings.Contains(stderr, "none of what linux/iio/iio.h declares") {
		t.Errorf("the build warns that iio.h's items did not reach the bindings:\n%s", stderr)
	}
	for _, q := range []struct{ name, sig string }{
		{"iio_device_alloc", "pub fn iio_device_alloc("},
		{"kmodvm_e2e_marker", "pub fn kmodvm_e2e_marker(x: "},
	} {
		res, code := bindingsQuery(t, ctx, append(slices.Clone(vn), q.name)...)
		if code != 0 || len(res.Items) == 0 || !strings.Contains(res.Items[0].Signature, q.sig) {
			t.Errorf("bindings %s on the variant: exit %d, %+v; want a fn %q", q.name, code, res.Items, q.sig)
			continue
		}
		checkLine(t, res.Items[0].Path, res.Items[0].Line, q.name)
	}
	// The shared build tree is the source's again: neither the patch nor the header is in
	// it, and the plain kernel (a cache hit now) still lacks both.
	trees, _ := filepath.Glob(filepath.Join(e2ePaths(t).Cache, "kernels", "trees", "*", "include", "linux", "iio", "iio.h"))
	if len(trees) == 0 {
		t.Error("no build tree with include/linux/iio/iio.h in the cache")
	}
	for _, h := range trees {
		tree := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(h))))
		if data, _ := os.ReadFile(h); strings.Contains(string(data), "kmodvm_e2e_marker") {
			t.Errorf("the build tree %s keeps the patch", tree)
		}
		if data, _ := os.ReadFile(filepath.Join(tree, "rust/bindings/bindings_helper.h")); strings.Contains(string(data), "linux/iio/iio.h") {
			t.Errorf("the build tree %s keeps the added binding", tree)
		}
	}
	mustCLI(t, ctx, append([]string{"kernel", "build"}, n...)...)
	for _, q := range []string{"iio_device_alloc", "kmodvm_e2e_marker"} {
		if _, code := bindingsQuery(t, ctx, append(slices.Clone(n), q)...); code != 1 {
			t.Errorf("bindings %s on the plain kernel after the variant: exit %d, want 1", q, code)
		}
	}

	// A patch whose context is not in the tree: stopped before make, named, nothing cached.
	bad := strings.Replace(markerPatch, " #define _INDUSTRIAL_IO_H_\n", " #define _INDUSTRIAL_IO_H_ /* not this */\n", 1)
	writeE2EFile(t, filepath.Join(dir, "0001-marker.patch"), bad)
	builds := filepath.Join(e2ePaths(t).Cache, "kernels", "builds")
	before := dirNames(t, builds)
	code, _, stderr = cli(t, ctx, append([]string{"kernel", "build"}, vn...)...)
	if code == 0 {
		t.Fatal("kernel build with a patch that does not apply: exit 0")
	}
	for _, want := range []string{"0001-marker.patch", "does not apply", `hunk "@@ -7,6 +7,8 @@`, "include/linux/iio/iio.h", "hint: "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("the error does not say %q:\n%s", want, stderr)
		}
	}
	if after := dirNames(t, builds); !slices.Equal(before, after) {
		t.Errorf("a failed patch left cache entries: before %q, after %q", before, after)
	}
}

// bindingsQuery runs `bindings --json ARGS` and decodes its output (printed on exit 1 too).
func bindingsQuery(t *testing.T, ctx context.Context, args ...string) (bindingsJSON, int) {
	t.Helper()
	code, out, _ := cli(t, ctx, append([]string{"bindings", "--json"}, args...)...)
	var res bindingsJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bindings %s: exit %d, output is not JSON (%v):\n%s", strings.Join(args, " "), code, err, out)
	}
	return res, code
}

// checkLine fails unless line of the host file path exists and mentions name.
func checkLine(t *testing.T, path string, line int, name string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s:%d: %v", path, line, err)
		return
	}
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) || !strings.Contains(lines[line-1], name) {
		t.Errorf("%s:%d does not mention %s", path, line, name)
	}
}

// writeE2EVariant writes to dir a kmodvm.yaml (starting with head) for the kernel variant
// TestE2EBindingsAndPatches and TestE2EDoc share, so that it is built once for both:
// linux/iio/iio.h bound, 0001-marker.patch declaring kmodvm_e2e_marker in it,
// 0002-doc-marker.patch adding KMODVM_E2E_DOC_MARKER to the kernel crate. Its path.
func writeE2EVariant(t *testing.T, dir, head string) string {
	t.Helper()
	writeE2EFile(t, filepath.Join(dir, "0001-marker.patch"), markerPatch)
	writeE2EFile(t, filepath.Join(dir, "0002-doc-marker.patch"), docMarkerPatch)
	return writeE2EFile(t, filepath.Join(dir, "kmodvm.yaml"),
		head+"kernel:\n  patches: [./0001-marker.patch, ./0002-doc-marker.patch]\n  bindings: [linux/iio/iio.h]\n")
}

func writeE2EFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// dirNames lists the directories in dir, sorted, but for temporary ones (".tmp-*"): the
// cache entries. Lock files and failure logs are not entries.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names
}
