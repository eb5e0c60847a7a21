package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that records failures instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()                           {}
func (r *recorder) Errorf(format string, args ...any) { r.failed = true }
func (r *recorder) Fatalf(format string, args ...any) { r.failed = true }

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.golden")
	if err := os.WriteFile(p, []byte("same\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, got string
		fail            bool
	}{
		{"equal", p, "same\n", false},
		{"differs", p, "other\n", true},
		{"missing file", filepath.Join(dir, "none.golden"), "x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			Check(r, tt.path, []byte(tt.got))
			if r.failed != tt.fail {
				t.Errorf("failed = %v, want %v", r.failed, tt.fail)
			}
		})
	}
}

func TestCheckUpdateWrites(t *testing.T) {
	old := *update
	*update = true
	defer func() { *update = old }()
	p := filepath.Join(t.TempDir(), "sub", "b.golden")
	Check(t, p, []byte("new\n"))
	if b, err := os.ReadFile(p); err != nil || string(b) != "new\n" {
		t.Fatalf("after -update: %q, %v", b, err)
	}
}
