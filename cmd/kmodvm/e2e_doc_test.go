package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// docMarkerPatch adds a documented constant to the kernel crate (Linux 7.2's
// rust/kernel/lib.rs): rustdoc documents it only when it runs with the patch applied.
const docMarkerPatch = `From: kmodvm e2e <e2e@kmodvm.invalid>
Subject: [PATCH] rust: kernel: add KMODVM_E2E_DOC_MARKER

---
 rust/kernel/lib.rs | 3 +++
 1 file changed, 3 insertions(+)

diff --git a/rust/kernel/lib.rs b/rust/kernel/lib.rs
--- a/rust/kernel/lib.rs
+++ b/rust/kernel/lib.rs
@@ -349,3 +349,6 @@
         c"<Location::file_as_c_str() not supported>"
     }
 }
+
+/// kmodvm's end-to-end test of ` + "`kmodvm doc`" + `: documented when the patch is applied.
+pub const KMODVM_E2E_DOC_MARKER: u32 = 1;
`

// TestE2EDoc: `doc` builds rustdoc for the kernel kmodvm.yaml selects, once (the second run
// finds it), with the kernel crate, the bindings page listing file_operations, and the
// shared tree clean afterwards; --serve answers on 127.0.0.1 with the pages and the C
// headers rustdoc links, and refuses any other address; a variant with a patch to the
// kernel crate gets documentation that has the patched-in item, which the default kernel's
// lacks.
func TestE2EDoc(t *testing.T) {
	e2eEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "variant"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A VM name no VM has: doc documents the kernel kmodvm.yaml selects.
	name := fmt.Sprintf("e2e-doc-%d", os.Getpid())
	cfg := writeE2EFile(t, filepath.Join(dir, "kmodvm.yaml"), "name: "+name+"\n")
	mustCLI(t, ctx, "kernel", "build", "--config", cfg)

	start := time.Now()
	res := docQuery(t, ctx, "--config", cfg)
	t.Logf("documentation of %s: cached %v, build %.0f s (this run %.0f s)", res.KernelRelease, res.Cached, res.BuildSeconds, time.Since(start).Seconds())
	checkDocs(t, res)
	for _, rel := range []string{"sync/struct.Arc.html", "fs/file/struct.File.html"} {
		if _, err := os.Stat(filepath.Join(filepath.Dir(res.KernelCrate), filepath.FromSlash(rel))); err != nil {
			t.Errorf("the kernel crate's documentation lacks %s: %v", rel, err)
		}
	}
	page, err := os.ReadFile(res.BindingsPage)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), `<div id="bindings-file_operations">`) || res.BindingsItems < 10000 {
		t.Errorf("the bindings page (%d items) does not list bindings::file_operations", res.BindingsItems)
	}
	checkTreesClean(t)

	again := docQuery(t, ctx, "--config", cfg)
	if !again.Cached || again.Path != res.Path {
		t.Errorf("doc again: cached %v, %s; want the same documentation found, not built", again.Cached, again.Path)
	}

	t.Run("serve", func(t *testing.T) { checkDocServe(t, ctx, cfg, res) })
	if code, _, stderr := cli(t, ctx, "doc", "--config", cfg, "--serve", "--addr", "0.0.0.0:0"); code != 2 || !strings.Contains(stderr, "loopback address only") {
		t.Errorf("doc --serve --addr 0.0.0.0:0: exit %d, %q; want it refused", code, stderr)
	}

	// A variant whose patch adds an item to the kernel crate: its documentation has it. It
	// is TestE2EBindingsAndPatches's variant, built once for both.
	vcfg := writeE2EVariant(t, filepath.Join(dir, "variant"), "name: "+name+"\n")
	mustCLI(t, ctx, "kernel", "build", "--config", vcfg)
	variant := docQuery(t, ctx, "--config", vcfg)
	if variant.KernelKey == res.KernelKey {
		t.Fatalf("the variant's documentation is the default kernel's (%s)", res.KernelKey)
	}
	checkDocs(t, variant)
	marker := "constant.KMODVM_E2E_DOC_MARKER.html"
	if _, err := os.Stat(filepath.Join(filepath.Dir(variant.KernelCrate), marker)); err != nil {
		t.Errorf("the variant's documentation lacks its patched-in constant: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(res.KernelCrate), marker)); err == nil {
		t.Error("the default kernel's documentation has the variant's constant")
	}
	checkTreesClean(t)
}

// docQuery runs `doc --json ARGS`, which must succeed, and decodes its output.
func docQuery(t *testing.T, ctx context.Context, args ...string) docJSON {
	t.Helper()
	code, out, _ := cli(t, ctx, append([]string{"doc", "--json"}, args...)...)
	var res docJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 {
		t.Fatalf("doc %s: exit %d, %v:\n%s", strings.Join(args, " "), code, err, out)
	}
	return res
}

// checkDocs checks that the documentation's pages are there and are what they say.
func checkDocs(t *testing.T, res docJSON) {
	t.Helper()
	for _, c := range []struct{ path, want string }{
		{res.Path, "Rust documentation of kernel " + res.KernelRelease},
		{res.KernelCrate, "kernel"},
		{res.BindingsPage, "Raw Rust bindings of kernel " + res.KernelRelease},
	} {
		data, err := os.ReadFile(c.path)
		if err != nil || !strings.Contains(string(data), c.want) {
			t.Errorf("%s: %v; want it to say %q", c.path, err, c.want)
		}
	}
}

// checkTreesClean fails when a kernel build tree keeps what a documentation build puts in
// it: rustdoc's output, applied patches, the in-progress marker.
func checkTreesClean(t *testing.T) {
	t.Helper()
	trees, _ := filepath.Glob(filepath.Join(e2ePaths(t).Cache, "kernels", "trees", "*"))
	for _, tree := range trees {
		for _, rel := range []string{"Documentation/output", ".kmodvm-patched", ".kmodvm-building"} {
			if _, err := os.Stat(filepath.Join(tree, rel)); err == nil {
				t.Errorf("the kernel tree %s keeps %s", tree, rel)
			}
		}
		if data, err := os.ReadFile(filepath.Join(tree, "rust/kernel/lib.rs")); err == nil && strings.Contains(string(data), "KMODVM_E2E_DOC_MARKER") {
			t.Errorf("the kernel tree %s keeps the variant's patch", tree)
		}
	}
}

var headerLink = regexp.MustCompile(`href="(/usr/src/kmodvm/linux/include/[^"#]+\.h)"`)

// checkDocServe: --serve prints a 127.0.0.1 URL that serves the pages and a C header
// rustdoc links to, and Ctrl-C ends it with exit 0.
func checkDocServe(t *testing.T, ctx context.Context, cfg string, res docJSON) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	url, stop := serveDoc(t, ctx, "doc", "--config", cfg, "--serve")
	header := ""
	_ = filepath.WalkDir(filepath.Dir(res.KernelCrate), func(p string, d fs.DirEntry, err error) error {
		if err != nil || header != "" || d.IsDir() || !strings.HasSuffix(p, ".html") {
			return err
		}
		if data, err := os.ReadFile(p); err == nil {
			if m := headerLink.FindSubmatch(data); m != nil {
				header = string(m[1])
			}
		}
		return nil
	})
	if header == "" {
		t.Error("no page of the kernel crate links a C header (srctree/include/...)")
	}
	for _, c := range []struct{ path, want string }{
		{"/", "Rust documentation of kernel"},
		{"/rust/kernel/index.html", "kernel"},
		{"/bindings.html", "bindings::file_operations"},
		{header, "#"},
	} {
		if c.path == "" {
			continue
		}
		resp, err := http.Get(strings.TrimSuffix(url, "/") + c.path)
		if err != nil {
			t.Errorf("GET %s: %v", c.path, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s: %d; want 200 with %q", c.path, resp.StatusCode, c.want)
		}
	}
	if code, stderr := stop(); code != 0 {
		t.Errorf("doc --serve: exit %d after Ctrl-C, want 0; stderr:\n%s", code, stderr)
	}
}
