package hosttool

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeSbin points SbinDirs at a temp dir holding the given tools and PATH at /usr/bin:/bin.
func fakeSbin(t *testing.T, tools map[string]os.FileMode) string {
	t.Helper()
	dir := t.TempDir()
	for name, mode := range tools {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	old := SbinDirs
	SbinDirs = []string{filepath.Join(dir, "missing"), dir}
	t.Cleanup(func() { SbinDirs = old })
	t.Setenv("PATH", "/usr/bin:/bin")
	return dir
}

func TestFind(t *testing.T) {
	dir := fakeSbin(t, map[string]os.FileMode{
		"kmodvm-test-tool":  0o755,
		"kmodvm-test-plain": 0o644,
		"sh":                0o755, // also in /bin: PATH comes first
	})
	if err := os.Mkdir(filepath.Join(dir, "kmodvm-test-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		tool string
		want string // "" for not found
	}{
		{"kmodvm-test-tool", filepath.Join(dir, "kmodvm-test-tool")},
		{"kmodvm-test-plain", ""},
		{"kmodvm-test-dir", ""},
		{"sh", "/usr/bin/sh"},
		{"kmodvm-no-such-tool", ""},
	}
	for _, tt := range tests {
		t.Run(tt.tool, func(t *testing.T) {
			got, err := Find(tt.tool)
			if tt.want == "" {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("Find(%q) = %q, %v; want ErrNotFound", tt.tool, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// /bin may be a link to /usr/bin: accept either for PATH hits.
			if got != tt.want && !(tt.tool == "sh" && got == "/bin/sh") {
				t.Errorf("Find(%q) = %q, want %q", tt.tool, got, tt.want)
			}
		})
	}
}

func TestNotFoundNamesThePackage(t *testing.T) {
	fakeSbin(t, nil)
	tests := []struct{ tool, want string }{
		{"newuidmap", "sudo apt-get install uidmap"},
		{"mkfs.ext4", "sudo apt-get install e2fsprogs"},
		{"qemu-system-x86_64", "sudo apt-get install qemu-system-x86"},
		{"kmodvm-unknown", "hint: install it"},
	}
	for _, tt := range tests {
		err := NotFound(tt.tool)
		if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), tt.tool+": ") {
			t.Errorf("NotFound(%q) = %v, want it to start with the tool and hold %q", tt.tool, err, tt.want)
		}
	}
	if Package("newgidmap") != "uidmap" || Package("kmodvm-unknown") != "" {
		t.Errorf("Package: newgidmap=%q, unknown=%q", Package("newgidmap"), Package("kmodvm-unknown"))
	}
}

func TestExtendPath(t *testing.T) {
	old := SbinDirs
	SbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}
	t.Cleanup(func() { SbinDirs = old })
	tests := []struct{ path, want string }{
		{"", "/usr/local/sbin:/usr/sbin:/sbin"},
		{"/usr/bin:/bin", "/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"},
		{"/usr/sbin:/usr/bin", "/usr/sbin:/usr/bin:/usr/local/sbin:/sbin"},
		{"/sbin:/usr/sbin:/usr/local/sbin", "/sbin:/usr/sbin:/usr/local/sbin"},
	}
	for _, tt := range tests {
		if got := ExtendPath(tt.path); got != tt.want {
			t.Errorf("ExtendPath(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestEnv(t *testing.T) {
	old := SbinDirs
	SbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}
	t.Cleanup(func() { SbinDirs = old })
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"no PATH", []string{"HOME=/h"}, []string{"HOME=/h", "PATH=/usr/local/sbin:/usr/sbin:/sbin"}},
		{"user PATH", []string{"PATH=/usr/bin:/bin", "LANG=C"}, []string{"LANG=C", "PATH=/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}},
		{"root PATH unchanged", []string{"PATH=/usr/local/sbin:/usr/sbin:/sbin:/usr/bin"}, []string{"PATH=/usr/local/sbin:/usr/sbin:/sbin:/usr/bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Env(tt.env); !slices.Equal(got, tt.want) {
				t.Errorf("Env(%q) = %q, want %q", tt.env, got, tt.want)
			}
		})
	}
	t.Setenv("PATH", "/usr/bin")
	got := Env(nil)
	if n := len(slices.DeleteFunc(slices.Clone(got), func(kv string) bool { return !strings.HasPrefix(kv, "PATH=") })); n != 1 {
		t.Errorf("Env(nil) has %d PATH entries: %q", n, got)
	}
	if !slices.Contains(got, "PATH=/usr/bin:/usr/local/sbin:/usr/sbin:/sbin") {
		t.Errorf("Env(nil) does not extend the process's PATH: %q", got)
	}
}
