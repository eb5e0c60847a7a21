package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/vm/hosttool"
	"github.com/kmodvm/kmodvm/vm/remedy"
)

// AccelProbe says how to find out whether KVM really runs a guest on this host.
//
// /dev/kvm existing, and libvirt listing domain type 'kvm', prove nothing: on a paravirtual
// KVM (kvm-pvm) ordinary guests die in the kernel decompressor with "KVM internal error.
// Suberror: 1 … emulation failure". The only reliable test is to boot a kernel once.
type AccelProbe struct {
	QEMU    string        // qemu-system-x86_64 binary; empty: found by hosttool
	Kernel  string        // a bzImage to boot
	Timeout time.Duration // for the whole probe; 0: 15s
	Device  string        // the KVM device; empty: /dev/kvm
}

// Probe runs ProbeKVM with p; its method value fits ResolveAccel.
func (p AccelProbe) Probe(ctx context.Context) (bool, string, error) {
	return ProbeKVM(ctx, p)
}

const (
	// defaultProbeTimeout: under working KVM a kernel prints its banner within a second or
	// two; on this project's kvm-pvm hosts a guest can also hang silently after the BIOS, and
	// then the timeout is what the probe costs.
	defaultProbeTimeout = 15 * time.Second
	// probeGrace is how long the probe keeps reading after "KVM internal error" for the
	// lines QEMU prints with it (suberror detail), before it kills QEMU.
	probeGrace = 2 * time.Second
	// probeGraceLines bounds the lines read during probeGrace.
	probeGraceLines = 20
)

// ProbeKVM boots p.Kernel once under KVM, without a disk:
//
//	qemu-system-x86_64 -accel kvm -cpu host -m 256 -nographic -no-reboot -kernel K -append "console=ttyS0 panic=-1"
//
// and reports whether the console shows "Linux version" — a kernel that then panics for want
// of a root filesystem is a success: KVM ran it. QEMU is killed as soon as the answer is
// known, on timeout, and when ctx ends. ok is false, with a one-line detail, when KVM cannot
// run the guest ("/dev/kvm missing", "permission denied on /dev/kvm", "KVM internal error.
// Suberror: 1, emulation failure", QEMU's own error line…). err is reserved for failures of
// the probe itself: no QEMU, no kernel, ctx ended.
func ProbeKVM(ctx context.Context, p AccelProbe) (ok bool, detail string, err error) {
	if err := ctx.Err(); err != nil {
		return false, "", fmt.Errorf("probe KVM: %w", err)
	}
	dev := p.Device
	if dev == "" {
		dev = "/dev/kvm"
	}
	if ok, detail := checkKVMDevice(dev); !ok {
		return false, detail, nil
	}
	qemu := p.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	qemuPath, err := hosttool.Find(qemu)
	if err != nil {
		return false, "", fmt.Errorf("probe KVM: QEMU not found (%w)", err)
	}
	if p.Kernel == "" {
		return false, "", errors.New("probe KVM: no kernel to boot")
	}
	if _, err := os.Stat(p.Kernel); err != nil {
		return false, "", fmt.Errorf("probe KVM: kernel: %w", err)
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = defaultProbeTimeout
	}

	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, qemuPath,
		"-accel", "kvm", "-cpu", "host", "-m", "256",
		"-nographic", "-no-reboot",
		"-kernel", p.Kernel, "-append", "console=ttyS0 panic=-1")
	// Own process group, killed as a whole: nothing may keep the output pipe open.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	pr, pw, err := os.Pipe()
	if err != nil {
		return false, "", fmt.Errorf("probe KVM: %w", err)
	}
	defer pr.Close()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pw.Close()
		return false, "", fmt.Errorf("probe KVM: start %s: %w", qemuPath, err)
	}
	pw.Close()

	lines := scanLines(context.Background(), pr)

	ok, detail = watchProbeOutput(runCtx, lines, timeout)
	cancel() // kill QEMU if it still runs
	for range lines {
		// Drain until QEMU is gone and the reader has finished.
	}
	_ = cmd.Wait() // killed on purpose, or exited: the output decided
	if err := ctx.Err(); err != nil {
		return false, "", fmt.Errorf("probe KVM: %w", err)
	}
	return ok, detail, nil
}

// checkKVMDevice reports whether the KVM device can be opened read-write.
func checkKVMDevice(dev string) (bool, string) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	switch {
	case err == nil:
		f.Close()
		return true, ""
	case errors.Is(err, fs.ErrNotExist):
		return false, dev + " missing"
	case errors.Is(err, fs.ErrPermission):
		return false, "permission denied on " + dev
	default:
		return false, fmt.Sprintf("cannot open %s: %v", dev, err)
	}
}

// watchProbeOutput reads the combined QEMU/console output until it decides. lines is closed
// when QEMU exits; ctx ends on timeout.
func watchProbeOutput(ctx context.Context, lines <-chan string, timeout time.Duration) (bool, string) {
	var last, firstErr string
	for {
		select {
		case <-ctx.Done():
			return false, fmt.Sprintf("a test kernel printed nothing within %s under KVM", timeout)
		case line, open := <-lines:
			if !open {
				switch {
				case firstErr != "":
					return false, "QEMU exited: " + firstErr
				case last != "":
					return false, "QEMU exited before the kernel printed anything; last output: " + last
				default:
					return false, "QEMU exited without output"
				}
			}
			if strings.Contains(line, "Linux version") {
				return true, ""
			}
			if strings.Contains(line, "KVM internal error") {
				return false, kvmErrorDetail(ctx, strings.TrimSpace(line), lines)
			}
			if t := strings.TrimSpace(line); t != "" {
				last = t
				if firstErr == "" && (strings.HasPrefix(t, "qemu") || strings.Contains(strings.ToLower(t), "error")) {
					firstErr = t
				}
			}
		}
	}
}

// kvmErrorDetail completes "KVM internal error. Suberror: N" with the "emulation failure"
// line QEMU prints right after it, if it comes within probeGrace.
func kvmErrorDetail(ctx context.Context, first string, lines <-chan string) string {
	grace := time.NewTimer(probeGrace)
	defer grace.Stop()
	for range probeGraceLines {
		select {
		case <-ctx.Done():
			return first
		case <-grace.C:
			return first
		case line, open := <-lines:
			if !open {
				return first
			}
			if strings.Contains(line, "emulation failure") {
				return first + ", emulation failure"
			}
		}
	}
	return first
}

// ResolveAccel turns the requested accel (auto, kvm or tcg) into kvm or tcg.
//
//   - tcg: tcg, without probing.
//   - kvm: kvm if probe says KVM works, else an error saying why, with a hint to use TCG.
//   - auto (or ""): kvm if probe says KVM works; else tcg and a one-line notice for the user.
//
// probe is usually AccelProbe.Probe.
func ResolveAccel(ctx context.Context, requested Accel, probe func(context.Context) (bool, string, error)) (Accel, string, error) {
	switch requested {
	case AccelTCG:
		return AccelTCG, "", nil
	case AccelKVM, AccelAuto, "":
	default:
		return "", "", fmt.Errorf("unknown accel %q: use auto, kvm or tcg", requested)
	}
	if probe == nil {
		return "", "", errors.New("resolve accel: no KVM probe given")
	}
	ok, detail, err := probe(ctx)
	if err != nil && ctx.Err() != nil {
		return "", "", fmt.Errorf("check whether KVM works: %w", err)
	}
	if requested == AccelKVM {
		switch {
		case err != nil:
			return "", "", remedy.With(fmt.Errorf("KVM was requested but could not be checked: %w", err), "", remedy.UseTCG)
		case !ok:
			return "", "", remedy.With(fmt.Errorf("KVM was requested but cannot run a guest here (%s)", detail), "", remedy.UseTCG, remedy.UseAutoAccel)
		}
		return AccelKVM, "", nil
	}
	switch {
	case err != nil:
		return AccelTCG, fmt.Sprintf("notice: could not check whether KVM works (%v); using TCG (slow); ask for kvm or tcg to choose yourself", oneLine(err.Error())), nil
	case !ok:
		return AccelTCG, fmt.Sprintf("notice: KVM cannot run guests here (%s); using TCG (slow); ask for kvm or tcg to choose yourself", detail), nil
	}
	return AccelKVM, "", nil
}

// oneLine keeps the first line of s.
func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// scanLines sends the lines of r, without their "\r", until r ends (then it closes the
// channel) or ctx ends. Lines up to 1 MiB are read whole.
func scanLines(ctx context.Context, r io.Reader) <-chan string {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
		for sc.Scan() {
			select {
			case lines <- strings.TrimRight(sc.Text(), "\r"):
			case <-ctx.Done():
				return
			}
		}
	}()
	return lines
}
