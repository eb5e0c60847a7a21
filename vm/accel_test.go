package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/remedy"
)

func TestResolveAccel(t *testing.T) {
	kvmWorks := func(context.Context) (bool, string, error) { return true, "", nil }
	kvmBroken := func(context.Context) (bool, string, error) {
		return false, "KVM internal error. Suberror: 1, emulation failure", nil
	}
	noDevice := func(context.Context) (bool, string, error) { return false, "/dev/kvm missing", nil }
	probeFails := func(context.Context) (bool, string, error) {
		return false, "", errors.New("probe KVM: QEMU not found\nhint: install it")
	}
	mustNotProbe := func(context.Context) (bool, string, error) {
		panic("probe called for tcg")
	}
	tests := []struct {
		name       string
		requested  Accel
		probe      func(context.Context) (bool, string, error)
		want       Accel
		wantNotice []string // substrings; nil means no notice
		wantErr    []string // substrings; nil means no error
	}{
		{"tcg never probes", AccelTCG, mustNotProbe, AccelTCG, nil, nil},
		{"auto with working kvm", AccelAuto, kvmWorks, AccelKVM, nil, nil},
		{"empty means auto", "", kvmWorks, AccelKVM, nil, nil},
		{"auto with broken kvm", AccelAuto, kvmBroken, AccelTCG,
			[]string{"notice: KVM cannot run guests here (KVM internal error. Suberror: 1, emulation failure); using TCG (slow); ask for kvm or tcg to choose yourself"}, nil},
		{"auto without /dev/kvm", AccelAuto, noDevice, AccelTCG,
			[]string{"notice: KVM cannot run guests here (/dev/kvm missing); using TCG"}, nil},
		{"auto when the probe cannot run", AccelAuto, probeFails, AccelTCG,
			[]string{"could not check whether KVM works (probe KVM: QEMU not found)", "using TCG"}, nil},
		{"kvm with working kvm", AccelKVM, kvmWorks, AccelKVM, nil, nil},
		{"kvm with broken kvm", AccelKVM, kvmBroken, "", nil,
			[]string{"KVM was requested but cannot run a guest here (KVM internal error. Suberror: 1, emulation failure)", "remedy: [UseTCG UseAutoAccel]"}},
		{"kvm when the probe cannot run", AccelKVM, probeFails, "", nil,
			[]string{"could not be checked", "QEMU not found", "remedy: [UseTCG]"}},
		{"unknown accel", "hvf", kvmWorks, "", nil, []string{`unknown accel "hvf"`}},
		{"auto without probe", AccelAuto, nil, "", nil, []string{"no KVM probe"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, notice, err := ResolveAccel(context.Background(), tt.requested, tt.probe)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ResolveAccel = %q, %q; want an error", got, notice)
				}
				text := err.Error()
				if re := remedy.Find(err); re != nil {
					text += fmt.Sprintf("; remedy: %v", re.Do)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(text, w) {
						t.Errorf("error %q lacks %q", text, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveAccel: %v", err)
			}
			if got != tt.want {
				t.Errorf("accel = %q, want %q", got, tt.want)
			}
			if tt.wantNotice == nil && notice != "" {
				t.Errorf("unexpected notice %q", notice)
			}
			for _, w := range tt.wantNotice {
				if !strings.Contains(notice, w) {
					t.Errorf("notice %q lacks %q", notice, w)
				}
			}
			if strings.Contains(notice, "\n") {
				t.Errorf("notice %q is not one line", notice)
			}
		})
	}
}

func TestResolveAccelCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	probe := func(ctx context.Context) (bool, string, error) { return false, "", ctx.Err() }
	if _, _, err := ResolveAccel(ctx, AccelAuto, probe); !errors.Is(err, context.Canceled) {
		t.Fatalf("ResolveAccel with a canceled context: %v, want context.Canceled (not a silent TCG fallback)", err)
	}
}

// fakeQEMU writes a shell script standing in for qemu-system-x86_64: it records its arguments
// in args.txt next to itself, then runs body.
func fakeQEMU(t *testing.T, body string) (qemu, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	qemu = filepath.Join(dir, "qemu-system-x86_64")
	argsFile = filepath.Join(dir, "args.txt")
	script := "#!/bin/sh\necho \"$@\" > '" + argsFile + "'\n" + body + "\n"
	if err := os.WriteFile(qemu, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return qemu, argsFile
}

// fakeDevice is a file that opens read-write, standing in for a usable /dev/kvm.
func fakeDevice(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestProbeKVM(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(kernel, []byte("not really a kernel"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		body       string // fake QEMU script; "" = no fake QEMU at all
		device     string // "" = a usable fake device
		timeout    time.Duration
		wantOK     bool
		wantDetail string
	}{
		{
			name: "kernel boots",
			body: `echo 'SeaBIOS (version 1.16.2)'; printf 'Booting from ROM..\r\n[    0.000000] Linux version 7.2.13 (root@kmodvm) #1\r\n'; exec sleep 600`,
			// The kernel would go on to panic (no root): the probe must not wait for it.
			wantOK: true,
		},
		{
			name:       "paravirtual KVM emulation failure",
			body:       `echo 'Booting from ROM..'; echo 'KVM internal error. Suberror: 1' >&2; echo 'extra data[0]: 0x000000000000000f' >&2; echo 'emulation failure' >&2; echo 'RAX=0000000000000000' >&2; exec sleep 600`,
			wantDetail: "KVM internal error. Suberror: 1, emulation failure",
		},
		{
			name:       "qemu aborts on -cpu host",
			body:       `echo 'qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0' >&2; echo "qemu-system-x86_64: ../target/i386/kvm/kvm.c:3045: kvm_buf_set_msrs: Assertion failed." >&2; exit 134`,
			wantDetail: "QEMU exited: qemu-system-x86_64: error: failed to set MSR 0x10a to 0x0",
		},
		{
			name:       "qemu exits silently",
			body:       `exit 1`,
			wantDetail: "QEMU exited without output",
		},
		{
			name:       "no output until the timeout",
			body:       `exec sleep 600`,
			timeout:    200 * time.Millisecond,
			wantDetail: "a test kernel printed nothing within 200ms under KVM",
		},
		{
			name:       "a child keeping the pipe open is killed too",
			body:       `sleep 600 & echo started; wait`,
			timeout:    200 * time.Millisecond,
			wantDetail: "a test kernel printed nothing within 200ms under KVM",
		},
		{
			name:       "no KVM device",
			device:     "/nonexistent/kvm",
			wantDetail: "/nonexistent/kvm missing",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := AccelProbe{Kernel: kernel, Timeout: tt.timeout, Device: tt.device, QEMU: "/nonexistent/qemu"}
			var argsFile string
			if tt.body != "" {
				p.QEMU, argsFile = fakeQEMU(t, tt.body)
			}
			if p.Device == "" {
				p.Device = fakeDevice(t)
			}
			ok, detail, err := ProbeKVM(context.Background(), p)
			if err != nil {
				t.Fatalf("ProbeKVM: %v", err)
			}
			if ok != tt.wantOK || detail != tt.wantDetail {
				t.Errorf("ProbeKVM = %v, %q; want %v, %q", ok, detail, tt.wantOK, tt.wantDetail)
			}
			if argsFile != "" {
				args, err := os.ReadFile(argsFile)
				if err != nil {
					t.Fatal(err)
				}
				want := "-accel kvm -cpu host -m 256 -nographic -no-reboot -kernel " + kernel + " -append console=ttyS0 panic=-1"
				if strings.TrimSpace(string(args)) != want {
					t.Errorf("QEMU args = %q, want %q", args, want)
				}
			}
		})
	}
}

func TestProbeKVMErrors(t *testing.T) {
	kernel := filepath.Join(t.TempDir(), "bzImage")
	if err := os.WriteFile(kernel, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	qemu, _ := fakeQEMU(t, "exit 0")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		p       AccelProbe
		wantErr string
	}{
		{"no qemu", context.Background(), AccelProbe{QEMU: "/nonexistent/qemu-system-x86_64", Kernel: kernel}, "QEMU not found"},
		{"no kernel given", context.Background(), AccelProbe{QEMU: qemu}, "no kernel"},
		{"kernel missing", context.Background(), AccelProbe{QEMU: qemu, Kernel: "/nonexistent/bzImage"}, "/nonexistent/bzImage"},
		{"canceled", canceled, AccelProbe{QEMU: qemu, Kernel: kernel}, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.Device = fakeDevice(t)
			ok, _, err := ProbeKVM(tt.ctx, tt.p)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ProbeKVM = %v, %v; want an error containing %q", ok, err, tt.wantErr)
			}
		})
	}
}
