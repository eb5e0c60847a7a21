package images

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kmodvm/kmodvm/vm/remedy"
)

func setUmask(m int) int { return syscall.Umask(m) }

func TestDiskSpecHash(t *testing.T) {
	root := &Root{Hash: "roothash"}
	base := DiskSpec{Root: root, Extras: []Tree{{Src: "/a", Dst: "/lib/modules/x"}}, ExtrasKey: "k1"}
	tests := []struct {
		name string
		spec DiskSpec
		same bool
	}{
		{"identical", DiskSpec{Root: &Root{Hash: "roothash"}, Extras: []Tree{{Src: "/a", Dst: "/lib/modules/x"}}, ExtrasKey: "k1"}, true},
		{"host path of an extra", DiskSpec{Root: root, Extras: []Tree{{Src: "/elsewhere", Dst: "/lib/modules/x"}}, ExtrasKey: "k1"}, true},
		{"unclean guest path", DiskSpec{Root: root, Extras: []Tree{{Src: "/a", Dst: "/lib/modules/x/"}}, ExtrasKey: "k1"}, true},
		{"root", DiskSpec{Root: &Root{Hash: "other"}, Extras: base.Extras, ExtrasKey: "k1"}, false},
		{"extras key", DiskSpec{Root: root, Extras: base.Extras, ExtrasKey: "k2"}, false},
		{"guest path", DiskSpec{Root: root, Extras: []Tree{{Src: "/a", Dst: "/lib/modules/y"}}, ExtrasKey: "k1"}, false},
		{"size", DiskSpec{Root: root, Extras: base.Extras, ExtrasKey: "k1", SizeGiB: 16}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if same := tt.spec.Hash() == base.Hash(); same != tt.same {
				t.Errorf("same hash = %v, want %v", same, tt.same)
			}
		})
	}
}

func TestDiskSpecValidate(t *testing.T) {
	root := &Root{Hash: "h"}
	tests := []struct {
		name string
		spec DiskSpec
		ok   bool
	}{
		{"root only", DiskSpec{Root: root}, true},
		{"extras", DiskSpec{Root: root, Extras: []Tree{{Src: "/a", Dst: "/b"}}, ExtrasKey: "k"}, true},
		{"no root", DiskSpec{}, false},
		{"extras without key", DiskSpec{Root: root, Extras: []Tree{{Src: "/a", Dst: "/b"}}}, false},
		{"relative src", DiskSpec{Root: root, Extras: []Tree{{Src: "a", Dst: "/b"}}, ExtrasKey: "k"}, false},
		{"dst is /", DiskSpec{Root: root, Extras: []Tree{{Src: "/a", Dst: "/"}}, ExtrasKey: "k"}, false},
		{"negative size", DiskSpec{Root: root, SizeGiB: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.spec.validate(); (err == nil) != tt.ok {
				t.Errorf("validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestOpenNotBuilt(t *testing.T) {
	cache := t.TempDir()
	_, err := OpenRoot(cache, DefaultSpec())
	if re := remedy.Find(err); !errors.Is(err, ErrNotBuilt) || re == nil || !slices.Equal(re.Do, []remedy.Action{remedy.BuildImage}) {
		t.Errorf("OpenRoot = %v", err)
	}
	_, err = OpenDisk(cache, DiskSpec{Root: &Root{Hash: "h"}})
	if !errors.Is(err, ErrNotBuilt) {
		t.Errorf("OpenDisk = %v", err)
	}
	// A partial build (temporary directory) is not a cache hit.
	if err := os.MkdirAll(filepath.Join(cache, "roots", ".tmp-"+DefaultSpec().Hash()+"-1", "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenRoot(cache, DefaultSpec()); !errors.Is(err, ErrNotBuilt) {
		t.Errorf("OpenRoot with only a partial build = %v", err)
	}
}

// TestBaseDiskOwnerOnly: a cached base disk holds the guest's private host key, so using it
// leaves it readable by its owner only, also when an older build left it world-readable.
func TestBaseDiskOwnerOnly(t *testing.T) {
	spec := DiskSpec{Root: &Root{Hash: "h"}}
	open := map[string]func(cache string) (*Disk, error){
		"OpenDisk": func(cache string) (*Disk, error) { return OpenDisk(cache, spec) },
		"BuildDisk, cached": func(cache string) (*Disk, error) {
			return BuildDisk(context.Background(), discardLogger(), cache, spec, nil)
		},
	}
	for name, openDisk := range open {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			base := filepath.Join(cache, "disks", spec.Hash(), baseName)
			if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(base, []byte("qcow2 with /etc/ssh/ssh_host_ed25519_key"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(base, 0o644); err != nil {
				t.Fatal(err)
			}
			d, err := openDisk(cache)
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(d.Base)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("base disk mode after %s = %v, want 0600", name, fi.Mode().Perm())
			}
		})
	}
}

func TestCreateOverlay(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", base, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	overlay := filepath.Join(dir, "vm", "disk.qcow2")
	if err := os.MkdirAll(filepath.Dir(overlay), 0o755); err != nil {
		t.Fatal(err)
	}
	// A relative base path is recorded as absolute.
	t.Chdir(dir)
	if err := CreateOverlay(ctx, "base.qcow2", overlay); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("qemu-img", "info", "--output=json", overlay).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"backing-filename": "`+base+`"`) {
		t.Errorf("overlay info lacks the absolute backing file %s:\n%s", base, out)
	}

	before, _ := os.ReadFile(overlay)
	err = CreateOverlay(ctx, base, overlay)
	if err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second CreateOverlay = %v, want an error", err)
	}
	if after, _ := os.ReadFile(overlay); string(after) != string(before) {
		t.Errorf("existing overlay was modified")
	}
	if err := CreateOverlay(ctx, filepath.Join(dir, "missing.qcow2"), filepath.Join(dir, "o2.qcow2")); err == nil {
		t.Errorf("overlay of a missing base succeeded")
	}
	left, _ := filepath.Glob(filepath.Join(dir, "vm", "*.tmp-*"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
