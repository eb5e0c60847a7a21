package main

import (
	"strings"
	"testing"
)

// `kmodvm cache key` tells the debug kernel from the plain one: a CI that switches
// kernel.debug on must not restore a cache without the debug kernel's vmlinux.
func TestCacheKeyDebugVariant(t *testing.T) {
	isolate(t)
	key := func(yaml string) string {
		t.Helper()
		dir := t.TempDir()
		if yaml != "" {
			writeFiles(t, dir, map[string]string{"kmodvm.yaml": yaml})
		}
		r := runIn(t, dir, "cache", "key")
		if r.code != 0 {
			t.Fatalf("cache key: exit %d: %s", r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	plain, explicit, debug := key(""), key("kernel:\n  debug: false\n"), key("kernel:\n  debug: true\n")
	if plain != explicit {
		t.Errorf("debug: false changed the key: %s vs %s", plain, explicit)
	}
	if debug == plain {
		t.Errorf("the debug kernel has the plain kernel's key %s", plain)
	}
}
