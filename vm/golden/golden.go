// Package golden compares test output with files kept under testdata/, and rewrites those
// files when the tests run with -update. Only tests import it.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Update reports whether the tests run with -update.
func Update() bool { return *update }

// Check compares got with the file at path; with -update it writes got there instead.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (go test -run '%s' -update creates it): %v", t.Name(), err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -run '%s' -update accepts the change):\n--- got\n%s\n--- want\n%s", path, t.Name(), got, want)
	}
}
