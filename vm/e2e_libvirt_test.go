package vm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"
)

// TestE2ELibvirtDefineUndefine runs against a real libvirtd (qemu:///system) when
// KMODVM_E2E=1: it defines a domain from DomainXML, checks libvirt kept what matters, and
// undefines it again. Nothing is booted (the kernel and disk paths need not exist).
//
//	libvirtd -d; virtlogd -d   # if not running (no systemd)
//	KMODVM_E2E=1 go test ./vm -run E2ELibvirt -v
func TestE2ELibvirtDefineUndefine(t *testing.T) {
	if os.Getenv("KMODVM_E2E") != "1" {
		t.Skip("set KMODVM_E2E=1 to run against a real libvirtd (qemu:///system)")
	}
	// Generous: libvirt 9.0 re-probes QEMU (30-55 s) on every define when /dev/kvm is not
	// accessible to libvirt-qemu (fix: chgrp kvm /dev/kvm && chmod 660 /dev/kvm).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	l, err := Connect(ctx, URISystem, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Disconnect() }) // registered first, so it runs after the domain cleanup
	d := NewDriver(l, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))

	uuid, err := NewDomainUUID()
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("kmodvm-e2e-%d", os.Getpid())
	dir := t.TempDir()
	spec := DomainSpec{
		Name: name, UUID: uuid, Accel: AccelTCG, MemoryMiB: 256, CPUs: 1,
		Kernel: dir + "/bzImage", Cmdline: "console=ttyS0 panic=-1",
		Disk: dir + "/disk.qcow2", ConsoleLog: dir + "/console.log",
		SSHPort: 47022, QEMUUser: "+0:+0",
	}
	t.Cleanup(func() {
		// Leave nothing behind, whatever failed.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = d.Destroy(ctx, name)
		if err := d.Undefine(ctx, name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})

	if err := d.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if st, err := d.State(ctx, name); err != nil || st != StateShutoff {
		t.Fatalf("state after define = %s, %v; want shutoff", st, err)
	}
	// Redefine with the same UUID, changed command line: updates in place.
	spec.Cmdline += " quiet"
	if err := d.Define(ctx, spec); err != nil {
		t.Fatalf("redefine: %v", err)
	}

	x, err := d.XMLDesc(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var got libvirtxml.Domain
	if err := got.Unmarshal(x); err != nil {
		t.Fatalf("parse libvirt's XML: %v", err)
	}
	checks := []struct {
		what     string
		ok       bool
		gotValue any
	}{
		{"type qemu", got.Type == "qemu", got.Type},
		{"uuid kept", strings.EqualFold(got.UUID, uuid), got.UUID},
		{"cmdline updated", got.OS != nil && got.OS.Cmdline == spec.Cmdline, got.OS},
		{"on_reboot destroy", got.OnReboot == "destroy", got.OnReboot},
		{"hostfwd arg kept", strings.Contains(x, "hostfwd=tcp:127.0.0.1:47022-:22"), "(see XML)"},
		{"nic address kept", strings.Contains(x, "bus=pci.0,addr=0x10"), "(see XML)"},
		{"console log kept", strings.Contains(x, spec.ConsoleLog), "(see XML)"},
		{"no interface", len(got.Devices.Interfaces) == 0, got.Devices.Interfaces},
		{"static DAC label", len(got.SecLabel) == 1 && got.SecLabel[0].Label == "+0:+0" && got.SecLabel[0].Relabel == "no", got.SecLabel},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("libvirt's definition: %s failed: got %v", c.what, c.gotValue)
		}
	}
	if t.Failed() {
		t.Logf("libvirt XML:\n%s", x)
	}

	if err := d.Undefine(ctx, name); err != nil {
		t.Fatal(err)
	}
	if st, err := d.State(ctx, name); err != nil || st != StateMissing {
		t.Fatalf("state after undefine = %s, %v; want missing", st, err)
	}
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestE2ELibvirtBootPanicStops boots a real kernel through libvirt (TCG) when KMODVM_E2E=1
// with the bzImage KMODVM_E2E_KERNEL names, else one kmodvm built in KMODVM_CACHE_DIR (make
// test runs this package after the CLI's end-to-end test built one). The disk is an empty qcow2, so the kernel prints its
// banner and then panics for want of a root filesystem; with panic=-1 and
// <on_reboot>destroy</on_reboot> the domain must then stop by itself. This proves the XML
// boots (user-mode NIC address, pty serial with log file, static DAC label) and that a guest
// panic ends as "shutoff", with the panic in the console log.
//
//	KMODVM_E2E=1 KMODVM_E2E_KERNEL=/path/to/bzImage go test ./vm -run E2ELibvirtBoot -v
func TestE2ELibvirtBootPanicStops(t *testing.T) {
	kernel := e2eKernel(t)
	qemuImg, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img not installed; hint: make deps")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.CommandContext(ctx, qemuImg, "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	l, err := Connect(ctx, URISystem, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Disconnect() })
	d := NewDriver(l, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))

	name := fmt.Sprintf("kmodvm-e2e-boot-%d", os.Getpid())
	consoleLog := filepath.Join(dir, "console.log")
	spec := DomainSpec{
		Name: name, Accel: AccelTCG, MemoryMiB: 256, CPUs: 1,
		Kernel: kernel, Cmdline: "console=ttyS0 panic=-1",
		Disk: disk, ConsoleLog: consoleLog,
		SSHPort: 47024, QEMUUser: "+0:+0",
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := d.Destroy(ctx, name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if err := d.Undefine(ctx, name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := d.Define(ctx, spec); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := d.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitState(ctx, name, StateShutoff, 200*time.Millisecond); err != nil {
		log, _ := os.ReadFile(consoleLog)
		t.Fatalf("%v\nconsole log:\n%s", err, log)
	}
	st, reason, err := d.StateReason(ctx, name)
	t.Logf("stopped after %s: %s (%s), %v", time.Since(start).Round(time.Millisecond), st, reason, err)
	log, err := os.ReadFile(consoleLog)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Linux version", "Kernel panic"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("console log lacks %q:\n%s", want, log)
		}
	}
}

// e2eKernel skips the test unless KMODVM_E2E=1, and returns the bzImage KMODVM_E2E_KERNEL
// names, else one kmodvm built in KMODVM_CACHE_DIR.
func e2eKernel(t *testing.T) string {
	t.Helper()
	if os.Getenv("KMODVM_E2E") != "1" {
		t.Skip("set KMODVM_E2E=1 to run against a real libvirtd (qemu:///system)")
	}
	if kernel := os.Getenv("KMODVM_E2E_KERNEL"); kernel != "" {
		return kernel
	}
	built, _ := filepath.Glob(filepath.Join(os.Getenv("KMODVM_CACHE_DIR"), "kernels", "builds", "*", "bzImage"))
	if len(built) == 0 {
		t.Fatal("no kernel to boot: set KMODVM_E2E_KERNEL to a bzImage, or KMODVM_CACHE_DIR to kmodvm's cache dir with a built kernel (make test sets it)")
	}
	return built[0]
}
