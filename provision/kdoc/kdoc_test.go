package kdoc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/provision/kernel"
)

func writeTestFile(t *testing.T, dir, rel, content string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testEntry is a built kernel's cache entry with the fixture's bindings, and their index.
func testEntry(t *testing.T) (*kernel.Result, *bindindex.Index) {
	t.Helper()
	k := &kernel.Result{Dir: t.TempDir(), Key: "0123456789abcdef", Release: "7.2.13-kmodvm-1e61f939"}
	if err := bindindex.Stage(t.Context(), fixtureTree, k.BindingsDir()); err != nil {
		t.Fatal(err)
	}
	ix, err := bindindex.Load(k.BindingsDir())
	if err != nil {
		t.Fatal(err)
	}
	return k, ix
}

// fakeRustdoc writes a tiny rustdoc tree, counting its calls; fail makes it fail after
// writing part of it, as a make that fails half-way does.
type fakeRustdoc struct {
	calls int
	fail  error
}

func (f *fakeRustdoc) run(ctx context.Context, log io.Writer, dst string) error {
	f.calls++
	fmt.Fprintln(log, "  RUSTDOC   rust/kernel/lib.rs")
	for rel, s := range map[string]string{
		"kernel/index.html":                   "<title>kernel - Rust</title>",
		"core/index.html":                     "<title>core - Rust</title>",
		"src/kernel/sync/refcount.rs.html":    "<pre>Refcount</pre>",
		"static.files/rustdoc-0123456789.css": "body {}",
	} {
		if f.fail != nil && rel != "kernel/index.html" {
			continue
		}
		p := filepath.Join(dst, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			return err
		}
	}
	if f.fail != nil {
		fmt.Fprintln(log, "error: unresolved link to `Foo`")
	}
	return f.fail
}

// Built once, whole, in the kernel's entry: the front page, rustdoc's tree, the bindings
// page linking the kernel crate's sources rustdoc has; then found, not built again.
func TestBuildThenCached(t *testing.T) {
	k, ix := testEntry(t)
	rd := &fakeRustdoc{}
	d, err := Build(t.Context(), nil, k, ix, rd.run)
	if err != nil {
		t.Fatal(err)
	}
	if d.Cached || d.Dir != filepath.Join(k.Dir, "doc") || d.Items == 0 || d.BuildTime <= 0 {
		t.Errorf("docs = %+v", d)
	}
	for _, p := range []string{d.Index(), d.KernelCrate(), d.BindingsPage(), d.Log()} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("the documentation lacks %s: %v", p, err)
		}
	}
	page, _ := os.ReadFile(d.BindingsPage())
	if !strings.Contains(string(page), `href="rust/src/kernel/sync/refcount.rs.html#46"`) {
		t.Errorf("the bindings page does not link refcount_inc's use to rustdoc's source page")
	}
	front, _ := os.ReadFile(d.Index())
	for _, want := range []string{`href="rust/kernel/index.html"`, `href="rust/core/index.html"`, `href="bindings.html"`} {
		if !strings.Contains(string(front), want) {
			t.Errorf("the front page lacks %s:\n%s", want, front)
		}
	}
	if fi, err := os.Stat(d.Dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("doc dir mode: %v, %v", fi.Mode(), err)
	}

	again, err := Build(t.Context(), nil, k, ix, rd.run)
	if err != nil || !again.Cached || again.Items != d.Items || again.BuildTime != d.BuildTime {
		t.Errorf("again = %+v, %v; want the same documentation, cached", again, err)
	}
	if rd.calls != 1 {
		t.Errorf("rustdoc ran %d times, want once", rd.calls)
	}
	if opened, err := Open(k); err != nil || opened == nil || !opened.Cached {
		t.Errorf("Open = %+v, %v", opened, err)
	}
}

// What rustdoc left half-made is never documentation: a failure names its log (kept) and
// says what rustdoc said; an interruption keeps nothing; and a build killed outright leaves
// a temporary directory the next build sweeps.
func TestBuildLeavesNothingHalfMade(t *testing.T) {
	k, ix := testEntry(t)
	fail := errors.New("make rustdoc failed: exit status 2; last lines:\n  error: unresolved link to `Foo`")
	_, err := Build(t.Context(), nil, k, ix, (&fakeRustdoc{fail: fail}).run)
	failedLog := filepath.Join(k.Dir, "doc.failed.log")
	if err == nil || !strings.Contains(err.Error(), "unresolved link") || !strings.Contains(err.Error(), "hint: the full log is "+failedLog) {
		t.Fatalf("err = %v, want rustdoc's last lines and the log", err)
	}
	if log, _ := os.ReadFile(failedLog); !strings.Contains(string(log), "unresolved link") {
		t.Errorf("the failed log = %q", log)
	}
	checkNoDocs(t, k)

	ctx, cancel := context.WithCancel(t.Context())
	_, err = Build(ctx, nil, k, ix, func(ctx context.Context, log io.Writer, dst string) error {
		cancel()
		return (&fakeRustdoc{fail: ctx.Err()}).run(ctx, log, dst)
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want interrupted", err)
	}
	checkNoDocs(t, k)

	if err := os.MkdirAll(filepath.Join(k.Dir, ".tmp-doc-123", "rust", "kernel"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(t.Context(), nil, k, ix, (&fakeRustdoc{}).run); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(k.Dir, ".tmp-*")); len(left) > 0 {
		t.Errorf("a killed build's temporary directory is still there: %v", left)
	}
	if _, err := os.Stat(failedLog); err == nil {
		t.Error("the failed log is still there after a build that succeeded")
	}
}

func checkNoDocs(t *testing.T, k *kernel.Result) {
	t.Helper()
	if d, err := Open(k); d != nil || err != nil {
		t.Errorf("Open = %+v, %v; want no documentation", d, err)
	}
	if left, _ := filepath.Glob(filepath.Join(k.Dir, ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

// A request that no longer builds the kernel is the caller's to explain: its error is
// passed on as it is, without a log to read.
func TestBuildOtherKernel(t *testing.T) {
	k, ix := testEntry(t)
	other := fmt.Errorf("%w: kernel 7.2.13 has key a, and the kernel kmodvm.yaml selects now has key b", kernel.ErrOtherKernel)
	_, err := Build(t.Context(), nil, k, ix, func(context.Context, io.Writer, string) error { return other })
	if !errors.Is(err, kernel.ErrOtherKernel) || strings.Contains(err.Error(), "hint: the full log") {
		t.Errorf("err = %v, want ErrOtherKernel as it is", err)
	}
	checkNoDocs(t, k)
}
