package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// kvmProbe is the remembered answer to "does KVM run guests here?". It holds until the
// host reboots or QEMU changes: a probe that times out costs 15 s, every `up` would pay it.
type kvmProbe struct {
	BootID string    `json:"boot_id"`
	QEMU   string    `json:"qemu"` // path and mtime
	OK     bool      `json:"ok"`
	Detail string    `json:"detail"`
	When   time.Time `json:"when"`
}

func (s *Sandbox) probeKVM(ctx context.Context, kernel string) (bool, string, error) {
	bootID, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	qemu, _ := hosttool.Find(s.opt.QEMU)
	if st, err := os.Stat(qemu); err == nil {
		qemu += "@" + st.ModTime().UTC().Format(time.RFC3339Nano)
	}
	path := filepath.Join(s.opt.State, "kvm-probe.json")
	want := kvmProbe{BootID: strings.TrimSpace(string(bootID)), QEMU: qemu}
	var got kvmProbe
	if data, err := os.ReadFile(path); err == nil && json.Unmarshal(data, &got) == nil &&
		got.BootID == want.BootID && got.QEMU == want.QEMU && want.BootID != "" {
		return got.OK, got.Detail, nil
	}
	ok, detail, err := s.opt.ProbeKVM(ctx, vm.AccelProbe{QEMU: s.opt.QEMU, Kernel: kernel})
	if err != nil {
		return ok, detail, err
	}
	want.OK, want.Detail, want.When = ok, detail, time.Now().UTC()
	if data, err := json.MarshalIndent(want, "", "  "); err == nil && os.MkdirAll(s.opt.State, 0o700) == nil {
		_ = os.WriteFile(path, data, 0o600)
	}
	return ok, detail, nil
}
