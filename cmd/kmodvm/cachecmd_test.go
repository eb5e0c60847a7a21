package main

import (
	"strings"
	"testing"
)

// `kmodvm cache key` tells the debug kernel (the default) from the plain one: a CI that
// switches kernel.debug off or on must not restore a cache with the other kernel.
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
	def, debug, plain := key(""), key("kernel:\n  debug: true\n"), key("kernel:\n  debug: false\n")
	if def != debug {
		t.Errorf("debug: true (the default) changed the key: %s vs %s", def, debug)
	}
	if debug == plain {
		t.Errorf("the debug kernel has the plain kernel's key %s", plain)
	}
}
