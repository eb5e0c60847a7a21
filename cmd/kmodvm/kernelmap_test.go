package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/kmodvm/kmodvm/provision/sandbox"
)

// The paths a run maps into the kernel's tree reach the sources its cache entry keeps beside
// the staged tree, and the tree it was built in; a kdir that is no entry's maps into itself.
func TestKernelMapper(t *testing.T) {
	cache := t.TempDir()
	entry := filepath.Join(cache, "builds", "9c9d515c312fd455")
	tree := filepath.Join(cache, "trees", "5f9308cc5bd77f5b")
	files := map[string]string{
		filepath.Join(entry, "info.json"):                             `{"key": "9c9d515c312fd455", "source": "package:linux-source-7.2=7.2.13-1"}`,
		filepath.Join(entry, "kdir/include/linux/slab.h"):             "",
		filepath.Join(entry, "bindings/rust/kernel/lib.rs"):           "",
		filepath.Join(entry, "rust-src/rust/pin-init/src/lib.rs"):     "",
		filepath.Join(tree, ".kmodvm-source"):                         "package:linux-source-7.2=7.2.13-1",
		filepath.Join(tree, "drivers/gpu/drm/drm_internal.h"):         "",
		filepath.Join(cache, "elsewhere/kdir/include/linux/module.h"): "",
		filepath.Join(cache, "root/usr/include/stdio.h"):              "",
	}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := &app{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	m := a.kernelMapper(&sandbox.Instance{KDir: filepath.Join(entry, "kdir"), RootDir: filepath.Join(cache, "root")})
	for in, want := range map[string]string{
		"/usr/src/kmodvm/linux/include/linux/slab.h": filepath.Join(entry, "kdir/include/linux/slab.h"),
		"rust/kernel/lib.rs":                         filepath.Join(entry, "bindings/rust/kernel/lib.rs"),
		"rust/pin-init/src/lib.rs":                   filepath.Join(entry, "rust-src/rust/pin-init/src/lib.rs"),
		"drivers/gpu/drm/drm_internal.h":             filepath.Join(tree, "drivers/gpu/drm/drm_internal.h"),
		"rust/kernel/gone.rs":                        "",
		"/usr/include/stdio.h":                       filepath.Join(cache, "root/usr/include/stdio.h"),
	} {
		if got, _ := m.Map(in); got != want {
			t.Errorf("Map(%q) = %q, want %q", in, got, want)
		}
	}
	other := a.kernelMapper(&sandbox.Instance{KDir: filepath.Join(cache, "elsewhere/kdir")})
	if got, _ := other.Map("include/linux/module.h"); got != filepath.Join(cache, "elsewhere/kdir/include/linux/module.h") || len(other.KernelExtra) != 0 {
		t.Errorf("a kdir of no entry: Map = %q, extra dirs %q", got, other.KernelExtra)
	}
}
