package vm

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"

	"github.com/kmodvm/kmodvm/vm/golden"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

func TestProbeDomainXML(t *testing.T) {
	for _, domType := range []string{"kvm", "qemu"} {
		got, err := probeDomainXML("kmodvm-probe-0123abcd", domType, "/var/lib/libvirt/images/kmodvm/k1-bzImage")
		if err != nil {
			t.Fatal(err)
		}
		golden.Check(t, filepath.Join("testdata", "domain", "probe-"+domType+".xml"), []byte(got))
	}
}

// The probe decides on what the guest does: its banner, a pause (KVM internal error), a
// stop, silence, or libvirt refusing to start it; the guest is gone afterwards, whatever
// happened.
func TestProbeKVMVia(t *testing.T) {
	const banner = "SeaBIOS (version 1.16.2)\r\nBooting from ROM...\r\n[    0.000000] Linux version 7.2.13-kmodvm (root@kmodvm) #1 SMP\r\n"
	for _, tt := range []struct {
		name    string
		console string
		setup   func(f *vmtest.Libvirt)
		timeout time.Duration
		wantOK  bool
		want    string
	}{
		{name: "banner", console: banner, wantOK: true},
		{name: "paused by QEMU", setup: func(f *vmtest.Libvirt) {
			f.OnCall("DomainGetState", func(name string) { _ = f.SetState(name, libvirt.DomainPaused, 0) })
		}, want: "QEMU paused the kvm guest before its kernel printed anything"},
		{name: "stops after the firmware", console: "SeaBIOS (version 1.16.2)\r\nBooting from ROM...\r\n", setup: func(f *vmtest.Libvirt) {
			f.OnCall("DomainGetState", func(name string) { _ = f.StopByItself(name) })
		}, want: "the kvm guest stopped before its kernel printed its banner; last output: Booting from ROM..."},
		{name: "silent", timeout: 300 * time.Millisecond, want: "a test kernel printed nothing within 300ms in a kvm guest"},
		{name: "libvirt refuses", setup: func(f *vmtest.Libvirt) {
			f.FailOn("DomainCreateXML", vmtest.Error(libvirt.ErrConfigUnsupported, "unsupported configuration: Domain requires KVM, but it is not available. Check that virtualization is enabled in the host BIOS"))
		}, want: "libvirt could not start a kvm guest: unsupported configuration: Domain requires KVM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			f.SetConsoleAll(tt.console)
			if tt.setup != nil {
				tt.setup(f)
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			ok, detail, err := ProbeKVMVia(t.Context(), f, "/var/lib/libvirt/images/kmodvm/k1-bzImage", timeout)
			if err != nil || ok != tt.wantOK || !strings.Contains(detail, tt.want) {
				t.Errorf("ProbeKVMVia = %v, %q, %v; want %v, %q", ok, detail, err, tt.wantOK, tt.want)
			}
			if doms := f.Domains(); len(doms) != 0 {
				t.Errorf("the probe left domains %v", doms)
			}
			if calls := f.Calls("DomainCreateXML"); len(calls) != 1 || !strings.HasPrefix(calls[0], "DomainCreateXML kmodvm-probe-") {
				t.Errorf("DomainCreateXML calls %q, want one of a kmodvm-probe- domain", calls)
			}
		})
	}
}

func TestProbeKVMViaCancelled(t *testing.T) {
	f := vmtest.NewLibvirt()
	ctx, cancel := context.WithCancel(t.Context())
	f.OnCall("DomainGetState", func(string) { cancel() })
	_, _, err := ProbeKVMVia(ctx, f, "/k", 10*time.Second)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if doms := f.Domains(); len(doms) != 0 {
		t.Errorf("a cancelled probe left domains %v", doms)
	}
}
