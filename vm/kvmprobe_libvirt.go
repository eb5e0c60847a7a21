package vm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// ProbeLibvirt is what booting a probe guest through libvirt needs.
type ProbeLibvirt interface {
	DomainCreateXML(xml string, flags libvirt.DomainCreateFlags) (libvirt.Domain, error)
	DomainOpenConsole(d libvirt.Domain, dev libvirt.OptString, w io.Writer, flags uint32) error
	DomainGetState(d libvirt.Domain, flags uint32) (state int32, reason int32, err error)
	DomainDestroy(d libvirt.Domain) error
}

var _ ProbeLibvirt = (*libvirt.Libvirt)(nil)

// probeStatePoll is how often a libvirt probe looks at its guest's state.
const probeStatePoll = 200 * time.Millisecond

// probeConsoleEnd bounds the wait for a probe's console stream to end once its domain is
// destroyed.
const probeConsoleEnd = 10 * time.Second

// ProbeKVMVia is ProbeKVM on the host behind lv, which may be another machine: it boots
// kernel (a path on that host, readable by its QEMU: a pool volume) in a transient domain
// of type kvm with no disk, and reads the serial console through libvirt. ok is true when
// the kernel's banner appears; false, with a one-line detail, when libvirt cannot start a
// KVM guest there, QEMU pauses it (what QEMU does on a KVM internal error, such as the
// emulation failure of a paravirtual KVM), it stops, or it prints nothing within timeout.
// The domain dies with the probe, and with the connection if kmodvm dies first.
func ProbeKVMVia(ctx context.Context, lv ProbeLibvirt, kernel string, timeout time.Duration) (ok bool, detail string, err error) {
	return probeVia(ctx, lv, kernel, "kvm", timeout)
}

// probeVia boots kernel in a transient domain of domType ("kvm", or "qemu" for TCG).
func probeVia(ctx context.Context, lv ProbeLibvirt, kernel, domType string, timeout time.Duration) (bool, string, error) {
	if err := ctx.Err(); err != nil {
		return false, "", fmt.Errorf("probe %s through libvirt: %w", domType, err)
	}
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name := "kmodvm-probe-" + hex.EncodeToString(suffix[:])
	doc, err := probeDomainXML(name, domType, kernel)
	if err != nil {
		return false, "", err
	}
	d, err := lv.DomainCreateXML(doc, libvirt.DomainStartAutodestroy)
	if err != nil {
		// libvirt's own word: no /dev/kvm there, no KVM support in its QEMU, no such kernel.
		return false, "libvirt could not start a " + domType + " guest: " + firstLine(err.Error()), nil
	}
	pr, pw := io.Pipe()
	consoleDone := make(chan struct{})
	go func() {
		defer close(consoleDone)
		err := lv.DomainOpenConsole(d, libvirt.OptString{}, pw, uint32(libvirt.DomainConsoleForce))
		pw.CloseWithError(err)
	}()
	console := scanLines(ctx, pr)
	lines := console
	// The console is read until its stream has ended, after the domain is gone: a stream
	// go-libvirt can no longer deliver to blocks its router, and with it every reply on
	// the connection, the destroy's first (a probe hung so in CI).
	defer func() {
		go func() {
			for range console {
			}
		}()
		go func() { _, _ = io.Copy(io.Discard, pr) }() // what the scanner no longer reads once ctx is done
		_ = lv.DomainDestroy(d)
		select {
		case <-consoleDone:
		case <-time.After(probeConsoleEnd):
		}
		pr.Close()
	}()

	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(probeStatePoll)
	defer tick.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return false, "", fmt.Errorf("probe %s through libvirt: %w", domType, ctx.Err())
		case <-deadline.C:
			return false, fmt.Sprintf("a test kernel printed nothing within %s in a %s guest", timeout, domType), nil
		case line, open := <-lines:
			if !open {
				lines = nil // the console ended: the state says why
				continue
			}
			if strings.Contains(line, "Linux version") {
				return true, "", nil
			}
			if t := strings.TrimSpace(line); t != "" {
				last = t
			}
		case <-tick.C:
			st, reason, err := lv.DomainGetState(d, 0)
			if isLibvirtCode(err, libvirt.ErrNoDomain) { // a transient domain is gone once it stops
				st, err = int32(libvirt.DomainShutoff), nil
			}
			if err != nil {
				return false, "", fmt.Errorf("probe %s through libvirt: state of the guest: %w", domType, err)
			}
			switch libvirt.DomainState(st) {
			case libvirt.DomainPaused:
				return false, fmt.Sprintf("QEMU paused the %s guest before its kernel printed anything (reason %d; QEMU does that on a KVM internal error such as an emulation failure: the host's /var/log/libvirt/qemu/%s.log has its message)", domType, reason, name), nil
			case libvirt.DomainShutoff, libvirt.DomainCrashed:
				if last != "" {
					return false, "the " + domType + " guest stopped before its kernel printed its banner; last output: " + last, nil
				}
				return false, "the " + domType + " guest stopped without output", nil
			}
		}
	}
}

// probeDomainXML is a diskless, networkless guest of 256 MiB booting kernel with its
// console on the serial port; under KVM it takes the host's CPU, as ProbeKVM's QEMU does.
func probeDomainXML(name, domType, kernel string) (string, error) {
	d := libvirtxml.Domain{
		Type:   domType,
		Name:   name,
		Memory: &libvirtxml.DomainMemory{Value: 256, Unit: "MiB"},
		VCPU:   &libvirtxml.DomainVCPU{Value: 1},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Type: "hvm"},
			Kernel:  kernel,
			Cmdline: "console=ttyS0 panic=-1",
		},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Serials:    []libvirtxml.DomainSerial{{Target: &libvirtxml.DomainSerialTarget{Port: new(uint)}}},
			Consoles:   []libvirtxml.DomainConsole{{Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: new(uint)}}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if domType == "kvm" {
		d.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	}
	doc, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("probe domain XML: %w", err)
	}
	return doc, nil
}

// firstLine is the first line of s, for a one-line detail.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}
