package sandbox

import (
	"context"
	"time"

	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/sshclient"
)

// Guest is a running VM with its SSH connection; it restarts the VM when asked (after a
// module crashed or hung it).
type Guest struct {
	sb *Sandbox
	in *Instance
	c  *sshclient.Client
}

// Guest connects to the running VM.
func (s *Sandbox) Guest(ctx context.Context, name string) (*Guest, error) {
	in, c, err := s.Connect(ctx, name)
	if err != nil {
		return nil, err
	}
	return &Guest{sb: s, in: in, c: c}, nil
}

// Instance is the VM's remembered state.
func (g *Guest) Instance() *Instance { return g.in }

// SSH is the current connection.
func (g *Guest) SSH() *sshclient.Client { return g.c }

// ConsoleLog is the serial console log file.
func (g *Guest) ConsoleLog() string {
	if g.in.Host != nil { // the host's log, copied here first
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := g.sb.SyncConsole(ctx, g.in); err != nil {
			g.sb.opt.Log.Warn("copy the console log from the host", "vm", g.in.Name, "err", err)
		}
	}
	return g.in.ConsoleLog()
}

// Running says whether the domain is running.
func (g *Guest) Running(ctx context.Context) (bool, error) {
	st, err := g.sb.drv.State(ctx, g.in.DomainName())
	return st == vm.StateRunning, err
}

// StoppedFromOutside says why the domain was stopped when someone other than the guest
// stopped it, and "" otherwise: destroyed through libvirt (virsh destroy), killed by
// libvirtd itself (it stops guests it cannot take over after a restart), QEMU failing, or
// the domain undefined. A panic or reboot inside the guest shows as shutoff "shutdown"
// (on_reboot=destroy) and is not from outside.
func (g *Guest) StoppedFromOutside(ctx context.Context) (string, error) {
	st, reason, err := g.sb.drv.StateReason(ctx, g.in.DomainName())
	if err != nil {
		return "", err
	}
	g.sb.opt.Log.Debug("why the guest stopped", "vm", g.in.Name, "state", st, "reason", reason)
	switch {
	case st == vm.StateMissing:
		return "its libvirt domain was undefined", nil
	case st != vm.StateShutoff:
		return "", nil
	}
	switch reason {
	case "destroyed":
		return "libvirt reports it destroyed, as `virsh destroy` does", nil
	case "daemon":
		return "libvirtd stopped it, as it does with guests it cannot take over after a restart", nil
	case "failed":
		return "libvirt reports that QEMU failed", nil
	case "saved", "migrated":
		return "libvirt reports it " + reason, nil
	}
	return "", nil
}

// InjectNMI sends the guest an NMI: its kernel (booted with unknown_nmi_panic, see Cmdline)
// panics and prints where it was stuck, then the guest stops.
func (g *Guest) InjectNMI(ctx context.Context) error {
	return g.sb.drv.InjectNMI(ctx, g.in.DomainName())
}

// Restart stops the VM hard, brings it back (by restoring its pristine save, or by a
// reboot: how says "restored" or "rebooted") and reconnects.
func (g *Guest) Restart(ctx context.Context) (how string, err error) {
	g.c.Close()
	c, how, err := g.sb.Restart(ctx, g.in)
	if err != nil {
		return "", err
	}
	g.c = c
	return how, nil
}

// Lock serializes commands that change the guest (run, sync): a second one waits and says so.
func (g *Guest) Lock(ctx context.Context) (func(), error) {
	return g.sb.Lock(ctx, g.in)
}

// Lock takes the VM's lock, without connecting to it.
func (s *Sandbox) Lock(ctx context.Context, in *Instance) (func(), error) {
	return lock(ctx, in.lockPath(), s.opt.Status)
}

// Close closes the SSH connection.
func (g *Guest) Close() error { return g.c.Close() }
