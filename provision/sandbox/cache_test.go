package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestCachedKernels: finished kernel builds are listed, builds under way are not.
func TestCachedKernels(t *testing.T) {
	cache := t.TempDir()
	if got := CachedKernels(cache); len(got) != 0 {
		t.Errorf("CachedKernels of an empty cache = %q", got)
	}
	done := filepath.Join(cache, "kernels", "builds", "k1", "bzImage")
	writeFile(t, done, "kernel")
	writeFile(t, filepath.Join(cache, "kernels", "builds", ".tmp-k2-1", "bzImage"), "half")
	if err := os.MkdirAll(filepath.Join(cache, "kernels", "builds", "k3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := CachedKernels(cache); !slices.Equal(got, []string{done}) {
		t.Errorf("CachedKernels = %q, want [%s]", got, done)
	}
}
