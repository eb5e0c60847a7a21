package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
)

// check is one doctor finding.
type check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok | warn | fail
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

func (a *app) doctorCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine: libvirt, QEMU, KVM, image tools, disk space",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			checks := a.doctor(cmd.Context())
			failed := false
			for _, c := range checks {
				failed = failed || c.Status == "fail"
			}
			if a.jsonOut {
				if err := a.printJSON(doctorJSON{Schema: schemaDoctor, OK: !failed, Checks: checks}); err != nil {
					return err
				}
			} else {
				for _, c := range checks {
					fmt.Fprintf(a.stdout, "%-5s %-19s %s\n", c.Status, c.Name, c.Detail)
					if c.Fix != "" && c.Status != "ok" {
						fmt.Fprintf(a.stdout, "      %-19s fix: %s\n", "", c.Fix)
					}
				}
			}
			if failed {
				return silentExit(exitFailure)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

func (a *app) doctor(ctx context.Context) []check {
	var out []check
	// libvirt
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	lv, err := vm.Connect(lctx, a.cfg.VM.URI, a.log)
	cancel()
	if err != nil {
		out = append(out, check{"libvirt", "fail", firstLine(err.Error()), startDaemonsFix})
	} else {
		ver, verr := lv.ConnectGetLibVersion()
		detail := a.cfg.VM.URI + " reachable"
		if verr == nil {
			detail += fmt.Sprintf(" (libvirt %d.%d.%d)", ver/1000000, ver/1000%1000, ver%1000)
		}
		out = append(out, check{"libvirt", "ok", detail, ""})
		_ = lv.Disconnect()
	}
	out = append(out, hostChecks(realHost(), a.cfg.VM.URI, a.paths)...)
	return append(out, a.kvmCheck(ctx))
}

// kvmCheck says whether KVM really runs a guest, by booting the cached kernel once.
func (a *app) kvmCheck(ctx context.Context) check {
	st, err := os.Stat("/dev/kvm")
	if err != nil {
		return check{"kvm", "warn", "/dev/kvm is missing: guests run under TCG (slow)", "enable virtualization in the firmware and load kvm_intel/kvm_amd"}
	}
	if st.Mode().Perm()&0o060 != 0o060 {
		return check{"kvm", "warn", "/dev/kvm is " + st.Mode().Perm().String() + ": libvirt then re-probes QEMU on every call (30-50 s per define/start)", "chgrp kvm /dev/kvm && chmod 660 /dev/kvm (what udev does; `make deps` does it)"}
	}
	kernels := sandbox.CachedKernels(a.paths.Cache)
	if len(kernels) == 0 {
		return check{"kvm", "warn", "/dev/kvm exists; whether it runs guests is checked once a kernel is built", "run `kmodvm kernel build`, then `kmodvm doctor` again"}
	}
	ok, detail, err := vm.ProbeKVM(ctx, vm.AccelProbe{QEMU: "qemu-system-x86_64", Kernel: kernels[0]})
	switch {
	case err != nil:
		return check{"kvm", "warn", "KVM probe failed: " + err.Error(), ""}
	case ok:
		return check{"kvm", "ok", "KVM runs guests; --accel auto uses it", ""}
	}
	return check{"kvm", "warn", "KVM is present but cannot run guests here (" + detail + "); --accel auto uses TCG", "nothing to do on this machine; on a workstation check nested virtualization"}
}
