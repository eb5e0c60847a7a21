package vm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// State is a domain's lifecycle state as the driver reports it.
type State string

const (
	StateRunning      State = "running"       // running (or blocked on I/O)
	StatePaused       State = "paused"        // paused by libvirt or the user
	StateShuttingDown State = "shutting-down" // guest is shutting down
	StateShutoff      State = "shutoff"       // defined, not running
	StateCrashed      State = "crashed"       // libvirt says crashed (on_crash=preserve; not our XML)
	StateSuspended    State = "suspended"     // guest power-management suspend
	StateMissing      State = "missing"       // not defined at all
	StateUnknown      State = "unknown"       // libvirt reports no state
)

// undefineFlags removes everything libvirt keeps next to a domain definition, so undefining
// cannot fail on leftovers (managed save image, snapshot/checkpoint metadata, nvram).
const undefineFlags = libvirt.DomainUndefineManagedSave | libvirt.DomainUndefineSnapshotsMetadata |
	libvirt.DomainUndefineCheckpointsMetadata | libvirt.DomainUndefineNvram

// slowLibvirtCall is how long a define may take before the driver warns. Measured: ~20 ms
// normally; 30-55 s when libvirt 9.0 finds /dev/kvm unreadable by libvirt-qemu (root:root
// 0600 without udev) and re-probes QEMU's capabilities several times per call.
const slowLibvirtCall = 5 * time.Second

// defaultPoll is WaitState's poll interval when none is given.
const defaultPoll = 250 * time.Millisecond

// Driver manages sandbox domains through a libvirt connection.
type Driver struct {
	lv  Libvirt
	log *slog.Logger
}

// NewDriver returns a Driver using lv. A nil log discards log output.
func NewDriver(lv Libvirt, log *slog.Logger) *Driver {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Driver{lv: lv, log: log}
}

// Close closes the libvirt connection.
func (d *Driver) Close() error {
	if err := d.lv.Disconnect(); err != nil {
		return fmt.Errorf("disconnect from libvirt: %w", err)
	}
	return nil
}

// lookup finds a domain by name; found is false (and err nil) when it is not defined.
func (d *Driver) lookup(ctx context.Context, name string) (dom libvirt.Domain, found bool, err error) {
	if err := ctx.Err(); err != nil {
		return libvirt.Domain{}, false, err
	}
	dom, err = d.lv.DomainLookupByName(name)
	if libvirt.IsNotFound(err) {
		return libvirt.Domain{}, false, nil
	}
	if err != nil {
		return libvirt.Domain{}, false, fmt.Errorf("look up domain %q: %w", name, err)
	}
	return dom, true, nil
}

// Define creates the domain described by s, or updates it in place when it exists. libvirt
// only updates a domain whose UUID stays the same: an empty s.UUID adopts the existing
// domain's UUID; a different one undefines the old (stopped) domain first, and fails if it is
// running.
func (d *Driver) Define(ctx context.Context, s DomainSpec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	old, found, err := d.lookup(ctx, s.Name)
	if err != nil {
		return fmt.Errorf("define domain %q: %w", s.Name, err)
	}
	if found {
		oldUUID := formatUUID(old.UUID)
		switch {
		case s.UUID == "":
			s.UUID = oldUUID
		case !strings.EqualFold(s.UUID, oldUUID):
			st, _, err := d.stateOf(ctx, old)
			if err != nil {
				return fmt.Errorf("define domain %q: %w", s.Name, err)
			}
			if st != StateShutoff {
				return fmt.Errorf("define domain %q: a domain of that name with another UUID (%s) is %s, so it cannot be replaced.\nhint: stop it first with 'virsh destroy %s'", s.Name, oldUUID, st, s.Name)
			}
			d.log.Info("replacing domain with a different UUID", "domain", s.Name, "old_uuid", oldUUID, "uuid", s.UUID)
			if err := d.lv.DomainUndefineFlags(old, undefineFlags); err != nil {
				return fmt.Errorf("define domain %q: undefine the old definition (UUID %s): %w", s.Name, oldUUID, err)
			}
		}
	}
	xml, err := DomainXML(s)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("define domain %q: %w", s.Name, err)
	}
	start := time.Now()
	if _, err := d.lv.DomainDefineXML(xml); err != nil {
		return fmt.Errorf("define domain %q: libvirt rejected the domain XML: %w", s.Name, err)
	}
	if took := time.Since(start); took > slowLibvirtCall {
		d.log.Warn("libvirt was slow to define the domain; it re-probes QEMU on every call when /dev/kvm is not accessible to its qemu user",
			"domain", s.Name, "took", took.Round(time.Second), "hint", "chgrp kvm /dev/kvm && chmod 660 /dev/kvm")
	}
	d.log.Info("defined domain", "domain", s.Name, "accel", s.Accel, "ssh_port", s.SSHPort, "updated", found)
	return nil
}

// Start boots the defined domain name.
func (d *Driver) Start(ctx context.Context, name string) error {
	dom, found, err := d.lookup(ctx, name)
	if err != nil {
		return fmt.Errorf("start domain %q: %w", name, err)
	}
	if !found {
		return fmt.Errorf("start domain %q: it is not defined", name)
	}
	if err := d.lv.DomainCreate(dom); err != nil {
		// A start retried after libvirtd restarted may find the first one done.
		if isLibvirtCode(err, libvirt.ErrOperationInvalid) {
			if st, _, serr := d.stateOf(ctx, dom); serr == nil && st == StateRunning {
				return nil
			}
		}
		err = fmt.Errorf("start domain %q: %w", name, err)
		if strings.Contains(err.Error(), "virtlogd-sock") {
			err = fmt.Errorf("%w.\nhint: virtlogd is not running: start it with 'virtlogd -d'", err)
		}
		return err
	}
	d.log.Info("started domain", "domain", name)
	return nil
}

// State reports the state of domain name; StateMissing (not an error) when it is not defined.
func (d *Driver) State(ctx context.Context, name string) (State, error) {
	st, _, err := d.StateReason(ctx, name)
	return st, err
}

// StateReason is State plus libvirt's reason for it, e.g. shutoff "destroyed", "shutdown"
// (the guest powered off or rebooted, which includes a panic with panic=-1) or "failed".
func (d *Driver) StateReason(ctx context.Context, name string) (State, string, error) {
	dom, found, err := d.lookup(ctx, name)
	if err != nil {
		return "", "", fmt.Errorf("get state of domain %q: %w", name, err)
	}
	if !found {
		return StateMissing, "", nil
	}
	st, reason, err := d.stateOf(ctx, dom)
	if err != nil {
		return "", "", fmt.Errorf("get state of domain %q: %w", name, err)
	}
	return st, reason, nil
}

// stateOf asks libvirt for the state of dom. A domain undefined between lookup and this call
// is StateMissing.
func (d *Driver) stateOf(ctx context.Context, dom libvirt.Domain) (State, string, error) {
	if err := ctx.Err(); err != nil {
		return "", "", err
	}
	st, reason, err := d.lv.DomainGetState(dom, 0)
	if libvirt.IsNotFound(err) {
		return StateMissing, "", nil
	}
	if err != nil {
		return "", "", err
	}
	return mapState(libvirt.DomainState(st), reason)
}

// mapState turns libvirt's state and reason numbers into a State and a reason word.
func mapState(st libvirt.DomainState, reason int32) (State, string, error) {
	var s State
	var r fmt.Stringer
	switch st {
	case libvirt.DomainNostate:
		s, r = StateUnknown, libvirt.DomainNostateReason(reason)
	case libvirt.DomainRunning:
		s, r = StateRunning, libvirt.DomainRunningReason(reason)
	case libvirt.DomainBlocked:
		s, r = StateRunning, libvirt.DomainBlockedReason(reason)
	case libvirt.DomainPaused:
		s, r = StatePaused, libvirt.DomainPausedReason(reason)
	case libvirt.DomainShutdown:
		s, r = StateShuttingDown, libvirt.DomainShutdownReason(reason)
	case libvirt.DomainShutoff:
		s, r = StateShutoff, libvirt.DomainShutoffReason(reason)
	case libvirt.DomainCrashed:
		s, r = StateCrashed, libvirt.DomainCrashedReason(reason)
	case libvirt.DomainPmsuspended:
		s, r = StateSuspended, libvirt.DomainPMSuspendedReason(reason)
	default:
		return "", "", fmt.Errorf("libvirt reported unknown domain state %d", st)
	}
	return s, reasonWord(st, r), nil
}

// reasonWord shortens a generated reason name ("DomainShutoffDestroyed") to "destroyed".
func reasonWord(st libvirt.DomainState, r fmt.Stringer) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), st.String()))
}

// lookupState finds domain name and its state; StateMissing when it is not defined.
func (d *Driver) lookupState(ctx context.Context, name string) (libvirt.Domain, State, error) {
	dom, found, err := d.lookup(ctx, name)
	if err != nil || !found {
		return dom, StateMissing, err
	}
	st, _, err := d.stateOf(ctx, dom)
	return dom, st, err
}

// Destroy stops domain name at once (power off, no guest shutdown). It is not an error when
// the domain is already stopped or not defined.
func (d *Driver) Destroy(ctx context.Context, name string) error {
	dom, st, err := d.lookupState(ctx, name)
	if err != nil {
		return fmt.Errorf("destroy domain %q: %w", name, err)
	}
	if st == StateShutoff || st == StateMissing {
		return nil
	}
	if err := d.lv.DomainDestroy(dom); err != nil {
		// It may have stopped on its own between the state check and the destroy.
		if isLibvirtCode(err, libvirt.ErrOperationInvalid) || libvirt.IsNotFound(err) {
			if st, _, serr := d.stateOf(ctx, dom); serr == nil && (st == StateShutoff || st == StateMissing) {
				return nil
			}
		}
		return fmt.Errorf("destroy domain %q: %w", name, err)
	}
	d.log.Info("destroyed domain", "domain", name, "was", st)
	return nil
}

// InjectNMI sends a non-maskable interrupt to domain name's CPUs. A guest booted with
// unknown_nmi_panic panics on it and prints where each CPU was, even one spinning with
// interrupts off: the way to learn where a hung guest is stuck before it is restarted.
func (d *Driver) InjectNMI(ctx context.Context, name string) error {
	dom, st, err := d.lookupState(ctx, name)
	if err != nil {
		return fmt.Errorf("send an NMI to domain %q: %w", name, err)
	}
	if st != StateRunning && st != StatePaused {
		return fmt.Errorf("send an NMI to domain %q: it is %s", name, st)
	}
	if err := d.lv.DomainInjectNmi(dom, 0); err != nil {
		return fmt.Errorf("send an NMI to domain %q: %w", name, err)
	}
	d.log.Info("sent an NMI", "domain", name)
	return nil
}

// Undefine removes the definition of domain name. It is not an error when it is not defined;
// it is one when the domain is still running (Destroy it first): libvirt would turn it into a
// transient domain that keeps running unseen.
func (d *Driver) Undefine(ctx context.Context, name string) error {
	dom, st, err := d.lookupState(ctx, name)
	if err != nil {
		return fmt.Errorf("undefine domain %q: %w", name, err)
	}
	if st == StateMissing {
		return nil
	}
	if st != StateShutoff {
		return fmt.Errorf("undefine domain %q: it is %s; stop it first (Destroy)", name, st)
	}
	if err := d.lv.DomainUndefineFlags(dom, undefineFlags); err != nil {
		if libvirt.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("undefine domain %q: %w", name, err)
	}
	d.log.Info("undefined domain", "domain", name)
	return nil
}

// WaitState polls domain name every poll (default 250ms) until it is in state want, or ctx
// ends. The error on ctx end names the state the domain was last seen in.
func (d *Driver) WaitState(ctx context.Context, name string, want State, poll time.Duration) error {
	if poll <= 0 {
		poll = defaultPoll
	}
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	last := State("")
	for {
		st, err := d.State(ctx, name)
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("wait for domain %q to be %s: %w", name, want, err)
		}
		if err == nil {
			if st == want {
				return nil
			}
			if st != last {
				d.log.Debug("waiting for domain state", "domain", name, "state", st, "want", want)
				last = st
			}
		}
		select {
		case <-ctx.Done():
			if last == "" {
				return fmt.Errorf("wait for domain %q to be %s: %w", name, want, ctx.Err())
			}
			return fmt.Errorf("wait for domain %q to be %s: still %s: %w", name, want, last, ctx.Err())
		case <-ticker.C:
		}
	}
}

// XMLDesc returns the domain XML libvirt holds for name (its live definition when running).
func (d *Driver) XMLDesc(ctx context.Context, name string) (string, error) {
	dom, found, err := d.lookup(ctx, name)
	if err != nil {
		return "", fmt.Errorf("get XML of domain %q: %w", name, err)
	}
	if !found {
		return "", fmt.Errorf("get XML of domain %q: it is not defined", name)
	}
	x, err := d.lv.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return "", fmt.Errorf("get XML of domain %q: %w", name, err)
	}
	return x, nil
}

// isLibvirtCode reports whether err is a libvirt error with the given code.
func isLibvirtCode(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(code)
}

// formatUUID renders a libvirt UUID in its canonical text form.
func formatUUID(u libvirt.UUID) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
