package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/provision/bindindex"
	"github.com/kmodvm/kmodvm/vm/golden"
)

// bindingsFixture is provision/bindindex's kernel tree fixture: bindgen-style generated
// files, kernel crate sources, headers.
const bindingsFixture = "../../provision/bindindex/testdata/tree"

// bindingsVM isolates the test and makes VM kmodvm, booting a cached kernel whose entry
// has the fixture's headers in its kdir and, when indexed, its bindings and their index.
// It returns the entry's directory.
func bindingsVM(t *testing.T, indexed bool) string {
	t.Helper()
	isolate(t)
	home := os.Getenv("KMODVM_HOME")
	entry := filepath.Join(home, "cache", "kernels", "builds", "0123456789abcdef")
	writeFiles(t, entry, map[string]string{
		"info.json": `{"key": "0123456789abcdef", "release": "7.2.13-kmodvm-1e61f939", "base": "small"}`,
		"bzImage":   "kernel",
	})
	if _, err := ondisk.CopyTree(context.Background(), bindingsFixture, filepath.Join(entry, "kdir"), ondisk.CopyOptions{}); err != nil {
		t.Fatal(err)
	}
	if indexed {
		if err := bindindex.Stage(context.Background(), bindingsFixture, filepath.Join(entry, "bindings")); err != nil {
			t.Fatal(err)
		}
	}
	vmDir := filepath.Join(home, "state", "vms", "kmodvm")
	if err := os.MkdirAll(vmDir, 0o700); err != nil {
		t.Fatal(err)
	}
	in := `{"name": "kmodvm", "kernel": "` + filepath.Join(entry, "bzImage") + `", "kernel_release": "7.2.13-kmodvm-1e61f939", "kernel_key": "0123456789abcdef"}`
	if err := os.WriteFile(filepath.Join(vmDir, "instance.json"), []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	return entry
}

// TestBindingsText: what a person reads for a bound name (with the kernel crate's use) and
// for one that is not bound (exit 1, the header and the kmodvm.yaml lines).
func TestBindingsText(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"helper", []string{"bindings", "refcount_inc"}, 0},
		{"two-crates", []string{"bindings", "__u32"}, 0},
		{"regex", []string{"bindings", "--regex", "^(kfree|krealloc)"}, 0},
		{"not-bound", []string{"bindings", "iio_dev"}, 1},
		{"inline", []string{"bindings", "iio_priv"}, 1},
		{"regex-none", []string{"bindings", "--regex", "^iio_"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gold, err := filepath.Abs(filepath.Join("testdata", "bindings-"+tc.name+".txt")) // runIn changes the directory
			if err != nil {
				t.Fatal(err)
			}
			entry := bindingsVM(t, true)
			r := runIn(t, "", tc.args...)
			if r.code != tc.code || r.stderr != "" {
				t.Fatalf("exit %d, stderr %q; want exit %d and nothing on stderr", r.code, r.stderr, tc.code)
			}
			golden.Check(t, gold, []byte(strings.ReplaceAll(r.stdout, entry, "$ENTRY")))
		})
	}
}

// TestBindingsJSON: kmodvm.bindings/v1, with host paths that exist.
func TestBindingsJSON(t *testing.T) {
	bindingsVM(t, true)
	r := runIn(t, "", "bindings", "--json", "refcount_inc")
	var got bindingsJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v", r.code, err)
	}
	if got.Schema != schemaBindings || !got.Bound || got.VM != "kmodvm" || got.KernelRelease != "7.2.13-kmodvm-1e61f939" || len(got.Items) != 1 || got.Missing != nil {
		t.Fatalf("got %+v", got)
	}
	it := got.Items[0]
	if it.Kind != "fn" || it.Crate != "bindings" || it.Helper != "rust_helper_refcount_inc" || it.Signature != "pub fn refcount_inc(r: *mut refcount_t);" ||
		len(it.Uses) != 1 || it.Uses[0].Impl != "impl Refcount" || it.Uses[0].Fn != "pub fn inc" {
		t.Errorf("item = %+v", it)
	}
	for _, p := range []string{it.Path, it.Uses[0].Path} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("path %s: %v", p, err)
		}
	}

	r = runIn(t, "", "bindings", "--json", "iio_device_register")
	got = bindingsJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 1 {
		t.Fatalf("exit %d, %v", r.code, err)
	}
	m := got.Missing
	if got.Bound || got.Items == nil || len(got.Items) != 0 || m == nil || m.Header != "linux/iio/iio.h" || m.Config != "" || !strings.Contains(m.Note, "function-like macro") ||
		len(m.Declarations) == 0 || m.Declarations[0].Line != 35 {
		t.Fatalf("got %+v, missing %+v", got, m)
	}
	if _, err := os.Stat(m.Declarations[0].Path); err != nil {
		t.Errorf("declaration path: %v", err)
	}

	r = runIn(t, "", "bindings", "--json", "iio_dev")
	got = bindingsJSON{}
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || r.code != 1 {
		t.Fatalf("exit %d, %v", r.code, err)
	}
	if got.Missing == nil || got.Missing.Config != "kernel:\n  bindings: [linux/iio/iio.h]\n  fragments: [\"CONFIG_IIO=y\"]\n" ||
		len(got.Missing.Options) != 1 || got.Missing.Options[0] != (bindindex.Option{Symbol: "IIO", Why: "drivers/Makefile builds drivers/iio/"}) {
		t.Errorf("missing = %+v; want the kmodvm.yaml lines: the header and CONFIG_IIO, which builds drivers/iio/", got.Missing)
	}
}

// TestBindingsErrors: a kernel built before the index, no kernel at all, a VM that does not
// exist, bad queries.
func TestBindingsErrors(t *testing.T) {
	t.Run("no-index", func(t *testing.T) {
		entry := bindingsVM(t, false)
		r := runIn(t, "", "bindings", "kfree")
		if r.code != 1 || !strings.Contains(r.stderr, "was built before kmodvm kept an index") ||
			!strings.Contains(r.stderr, "hint: `rm -rf "+entry+" && kmodvm kernel build`") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("no-kernel", func(t *testing.T) {
		isolate(t)
		r := runIn(t, "", "bindings", "kfree")
		if r.code != 1 || !strings.Contains(r.stderr, "is not built; hint: `kmodvm kernel build` builds it") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("no-such-vm", func(t *testing.T) {
		bindingsVM(t, true)
		r := runIn(t, "", "-n", "other", "bindings", "kfree")
		if r.code != 1 || !strings.Contains(r.stderr, `there is no VM named "other"`) {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("kernel-gone", func(t *testing.T) {
		entry := bindingsVM(t, true)
		if err := os.RemoveAll(entry); err != nil {
			t.Fatal(err)
		}
		r := runIn(t, "", "bindings", "kfree")
		if r.code != 1 || !strings.Contains(r.stderr, "is gone from the cache") || !strings.Contains(r.stderr, "kmodvm destroy -n kmodvm && kmodvm up -n kmodvm") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	for _, args := range [][]string{{"bindings", "not a name"}, {"bindings", "--regex", "(unclosed"}, {"bindings"}} {
		isolate(t)
		if r := runIn(t, "", args...); r.code != 2 || !strings.Contains(r.stderr, "hint:") {
			t.Errorf("%v: exit %d, stderr %q; want a usage error with a hint", args, r.code, r.stderr)
		}
	}
}
