package vmtest_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/digitalocean/go-libvirt"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

var _ vm.Libvirt = (*vmtest.Libvirt)(nil)

func spec() vm.DomainSpec {
	return vm.DomainSpec{
		Name: "kmodvm-t", Accel: vm.AccelTCG, MemoryMiB: 256, CPUs: 1,
		Kernel: "/k/bzImage", Disk: "/d/overlay.qcow2", SSHPort: 2222,
	}
}

func started(t *testing.T) (*vmtest.Libvirt, *vm.Driver) {
	t.Helper()
	f := vmtest.NewLibvirt()
	d := vm.NewDriver(f, nil)
	ctx := context.Background()
	if err := d.Define(ctx, spec()); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, "kmodvm-t"); err != nil {
		t.Fatal(err)
	}
	return f, d
}

func TestStopByItself(t *testing.T) {
	f, d := started(t)
	ctx := context.Background()
	if got := f.Running(); !slices.Equal(got, []string{"kmodvm-t"}) {
		t.Fatalf("Running = %q", got)
	}
	if err := f.StopByItself("kmodvm-t"); err != nil {
		t.Fatal(err)
	}
	st, reason, err := d.StateReason(ctx, "kmodvm-t")
	if err != nil || st != vm.StateShutoff || reason != "shutdown" {
		t.Errorf("after StopByItself: %s (%s), %v; want shutoff (shutdown)", st, reason, err)
	}
	if err := f.StopByItself("kmodvm-t"); err == nil {
		t.Error("StopByItself of a stopped domain: no error")
	}
	if len(f.Running()) != 0 {
		t.Errorf("Running = %q, want none", f.Running())
	}
}

func TestStopByItselfTransient(t *testing.T) {
	f, d := started(t)
	// libvirt keeps an undefined running domain as a transient one.
	if err := f.DomainUndefineFlags(mustLookup(t, f), 0); err != nil {
		t.Fatal(err)
	}
	dom, ok := f.Domain("kmodvm-t")
	if !ok || !dom.Transient || dom.State != libvirt.DomainRunning {
		t.Fatalf("after undefine while running: %+v, %v; want a running transient domain", dom, ok)
	}
	if err := f.StopByItself("kmodvm-t"); err != nil {
		t.Fatal(err)
	}
	if st, err := d.State(context.Background(), "kmodvm-t"); err != nil || st != vm.StateMissing {
		t.Errorf("transient domain after stopping: %s, %v; want missing", st, err)
	}
}

func mustLookup(t *testing.T, f *vmtest.Libvirt) libvirt.Domain {
	t.Helper()
	d, err := f.DomainLookupByName("kmodvm-t")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFailOn(t *testing.T) {
	f, d := started(t)
	ctx := context.Background()
	lost := vmtest.Error(libvirt.ErrRPC, "connection lost")

	f.FailOn("DomainDestroy", vmtest.Error(libvirt.ErrSystemError, "cannot kill"))
	if err := d.Destroy(ctx, "kmodvm-t"); err == nil || !strings.Contains(err.Error(), "cannot kill") {
		t.Errorf("Destroy error = %v, want the injected one", err)
	}
	if got := f.Running(); len(got) != 1 {
		t.Errorf("a failed DomainDestroy changed the state: running = %q", got)
	}
	f.FailOn("DomainDestroy", nil)

	f.FailOn(vmtest.AnyMethod, lost)
	for name, op := range map[string]func() error{
		"State": func() error { _, err := d.State(ctx, "kmodvm-t"); return err },
		"Close": d.Close,
	} {
		var le libvirt.Error
		if err := op(); !errors.As(err, &le) || le.Code != uint32(libvirt.ErrRPC) {
			t.Errorf("%s with AnyMethod failing: error %v, want the injected libvirt.Error", name, err)
		}
	}
	f.FailOn(vmtest.AnyMethod, nil)
	if err := d.Destroy(ctx, "kmodvm-t"); err != nil {
		t.Errorf("Destroy after clearing failures: %v", err)
	}
	if got := f.Calls("DomainDestroy"); !slices.Equal(got, []string{"DomainDestroy kmodvm-t", "DomainDestroy kmodvm-t"}) {
		t.Errorf("DomainDestroy calls = %q, want two (failed ones are recorded)", got)
	}
}

func TestOnCallMayUseTheFake(t *testing.T) {
	f, d := started(t)
	var seen []string
	// A hook runs without the fake's lock: it can change the fake.
	f.OnCall("DomainGetState", func(name string) {
		seen = append(seen, name)
		_ = f.StopByItself(name)
	})
	if st, err := d.State(context.Background(), "kmodvm-t"); err != nil || st != vm.StateShutoff {
		t.Errorf("State = %s, %v; want shutoff (the hook stopped it)", st, err)
	}
	if !slices.Equal(seen, []string{"kmodvm-t"}) {
		t.Errorf("hook saw %q", seen)
	}
	f.OnCall("DomainGetState", nil)
	if _, err := d.State(context.Background(), "kmodvm-t"); err != nil || len(seen) != 1 {
		t.Errorf("hook ran after removal (%d calls), err %v", len(seen), err)
	}
}

func TestAddDomainAndAccessors(t *testing.T) {
	f := vmtest.NewLibvirt()
	if err := f.AddDomain("user-vm", libvirt.DomainRunning); err != nil {
		t.Fatal(err)
	}
	if err := f.AddDomain("kmodvm-a", libvirt.DomainShutoff); err != nil {
		t.Fatal(err)
	}
	if err := f.AddDomain("kmodvm-a", libvirt.DomainShutoff); err == nil {
		t.Error("AddDomain of an existing name: no error")
	}
	if got := f.Domains(); !slices.Equal(got, []string{"kmodvm-a", "user-vm"}) {
		t.Errorf("Domains = %q", got)
	}
	if got := f.Running(); !slices.Equal(got, []string{"user-vm"}) {
		t.Errorf("Running = %q", got)
	}
	if len(f.Calls()) != 0 || len(f.Defined()) != 0 {
		t.Errorf("AddDomain recorded calls %q / definitions %d", f.Calls(), len(f.Defined()))
	}
	d := vm.NewDriver(f, nil)
	x, err := d.XMLDesc(context.Background(), "kmodvm-a")
	if err != nil || !strings.Contains(x, "<name>kmodvm-a</name>") {
		t.Errorf("XMLDesc = %q, %v", x, err)
	}
	f.Remove("kmodvm-a")
	if _, ok := f.Domain("kmodvm-a"); ok {
		t.Error("domain still there after Remove")
	}
}
