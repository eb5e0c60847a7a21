package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/kmodvm/kmodvm/vm/golden"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

// restoreSpec is the guest the saved domain of testdata/save/saved.xml is restored as: another
// VM's name, disk, console log and port, the same machine.
func restoreSpec() DomainSpec {
	s := baseSpec()
	s.Name = "kmodvm-1000-ci"
	s.Title = "kmodvm VM ci of alice"
	s.Disk = "/home/alice/.local/state/kmodvm/vms/ci/overlay.qcow2"
	s.ConsoleLog = "/home/alice/.local/state/kmodvm/vms/ci/console.log"
	s.SSHPort = 41234
	s.QEMUUser = "+1000:+1000"
	s.Owner = &Owner{UID: 1000, User: "alice", StateDir: "/home/alice/.local/state/kmodvm/vms/ci", VM: "ci"}
	return s
}

func TestRestoreXMLGolden(t *testing.T) {
	saved, err := os.ReadFile(filepath.Join("testdata", "save", "saved.xml"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := RestoreXML(string(saved), restoreSpec())
	if err != nil {
		t.Fatalf("RestoreXML: %v", err)
	}
	golden.Check(t, filepath.Join("testdata", "save", "restore.xml"), []byte(got))

	// What the restore depends on, read back so a careless -update cannot hide it.
	var s, r libvirtxml.Domain
	if err := s.Unmarshal(string(saved)); err != nil {
		t.Fatal(err)
	}
	if err := r.Unmarshal(got); err != nil {
		t.Fatal(err)
	}
	if r.Name != "kmodvm-1000-ci" || r.UUID != s.UUID || r.OS.Type.Machine != "pc-i440fx-7.2" {
		t.Errorf("name %q uuid %q machine %q: want the VM's name, the saved UUID and machine", r.Name, r.UUID, r.OS.Type.Machine)
	}
	if f := r.Devices.Disks[0].Source.File.File; f != restoreSpec().Disk || r.Devices.Disks[0].BackingStore != nil {
		t.Errorf("disk %q (backing store %v): want the VM's overlay and no saved backing chain", f, r.Devices.Disks[0].BackingStore)
	}
	if a := r.Devices.Disks[0].Address; a == nil || a.PCI == nil || *a.PCI.Slot != 3 {
		t.Errorf("disk address %+v: want the saved PCI slot 3 kept", a)
	}
	if !strings.Contains(got, "hostfwd=tcp:127.0.0.1:41234-:22") || strings.Contains(got, "40022") {
		t.Errorf("restore XML does not forward the VM's port 41234 only:\n%s", got)
	}
	if strings.Contains(got, "/vms/dev/") {
		t.Errorf("restore XML still names the saved VM's files:\n%s", got)
	}
}

func TestRestoreXMLStale(t *testing.T) {
	saved, err := os.ReadFile(filepath.Join("testdata", "save", "saved.xml"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		edit func(*DomainSpec)
		want string
	}{
		{"other UUID", func(s *DomainSpec) { s.UUID = "00000000-0000-4000-8000-000000000001" }, "UUID 5b0f8c3e-2f1a-4c6e-9d7b-3a1e2c4d5f60, not 00000000"},
		{"more memory", func(s *DomainSpec) { s.MemoryMiB = 2048 }, "1048576 KiB of memory, not 2048 MiB"},
		{"more vCPUs", func(s *DomainSpec) { s.CPUs = 2 }, "1 vCPUs, not 2"},
		{"KVM", func(s *DomainSpec) { s.Accel = AccelKVM }, "virt type qemu, not kvm"},
		{"another kernel", func(s *DomainSpec) { s.Kernel = "/var/lib/kmodvm/kernels/new/bzImage" }, "another kernel or command line"},
		{"another command line", func(s *DomainSpec) { s.Cmdline += " quiet" }, "another kernel or command line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := restoreSpec()
			tt.edit(&s)
			_, err := RestoreXML(string(saved), s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RestoreXML = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// TestSaveRestore saves a running domain and restores it as another domain through the
// driver, then the ways a restore fails as libvirt's do.
func TestSaveRestore(t *testing.T) {
	ctx := context.Background()
	lv := vmtest.NewLibvirt()
	d := NewDriver(lv, nil)
	dev := baseSpec()
	if err := d.Define(ctx, dev); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, dev.Name); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "memory.save")
	if err := d.Save(ctx, dev.Name, file); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if st, reason, _ := d.StateReason(ctx, dev.Name); st != StateShutoff || reason != "saved" {
		t.Errorf("after Save: %s (%s), want shutoff (saved)", st, reason)
	}
	if err := d.Save(ctx, dev.Name, file); err == nil || !strings.Contains(err.Error(), "it is shutoff") {
		t.Errorf("Save of a stopped domain = %v, want an error saying it is shutoff", err)
	}
	saved, err := d.SavedXML(ctx, file)
	if err != nil {
		t.Fatalf("SavedXML: %v", err)
	}
	// The saved domain must be gone before another takes its UUID.
	if err := d.Undefine(ctx, dev.Name); err != nil {
		t.Fatal(err)
	}
	ci := restoreSpec()
	x, err := RestoreXML(saved, ci)
	if err != nil {
		t.Fatalf("RestoreXML: %v", err)
	}
	if err := d.Define(ctx, ci); err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(ctx, file, x); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if st, reason, _ := d.StateReason(ctx, ci.Name); st != StateRunning || reason != "restored" {
		t.Errorf("after Restore: %s (%s), want running (restored)", st, reason)
	}
	if err := d.Restore(ctx, file, x); err == nil || !strings.Contains(err.Error(), "already active") {
		t.Errorf("Restore into the running domain = %v, want libvirt's 'already active'", err)
	}

	lv.FailOn(vmtest.AnyMethod, nil)
	garbage := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(garbage, []byte("this is no save image at all"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SavedXML(ctx, garbage); err == nil || !strings.Contains(err.Error(), "image magic is incorrect") {
		t.Errorf("SavedXML of garbage = %v, want 'image magic is incorrect'", err)
	}
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut")
	if err := os.WriteFile(cut, whole[:len(whole)-5], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Destroy(ctx, ci.Name); err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(ctx, cut, x); err == nil || !strings.Contains(err.Error(), "load of migration failed") {
		t.Errorf("Restore of a truncated file = %v, want QEMU's load failure", err)
	}
	other := ci
	other.MemoryMiB = 2048
	bad, err := DomainXML(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Restore(ctx, file, bad); err == nil || !strings.Contains(err.Error(), "does not match source") {
		t.Errorf("Restore with other memory = %v, want the ABI check's error", err)
	}
	if v1, v2, err := d.Versions(ctx); err != nil || v1 != 9000000 || v2 != 7002000 {
		t.Errorf("Versions = %d, %d, %v; want the fake's 9000000, 7002000", v1, v2, err)
	}
	if got := lv.Calls("DomainRestoreFlags"); len(got) != 4 || got[0] != "DomainRestoreFlags "+ci.Name {
		t.Errorf("restore calls = %q", got)
	}
	_ = libvirt.DomainSaveRunning
}
