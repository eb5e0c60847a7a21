package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/remotehost"
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
	uri := a.cfg.VM.URI
	remote := remotehost.IsRemote(uri)
	// libvirt
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	lv, err := a.connectLibvirt(lctx)
	cancel()
	if err != nil {
		fix := startDaemonsFix
		if remote {
			fix = "check that `ssh` reaches the host with the URI's user and key, and that libvirtd (or virtqemud) runs there"
		}
		out = append(out, check{"libvirt", "fail", firstLine(err.Error()), fix})
	} else {
		detail := uri + " reachable"
		if ver, verr := lv.ConnectGetLibVersion(); verr == nil {
			detail += " (libvirt " + versionString(ver)
			if qv, qerr := lv.ConnectGetVersion(); qerr == nil && qv != 0 {
				detail += ", QEMU " + versionString(qv)
			}
			detail += ")"
		}
		out = append(out, check{"libvirt", "ok", detail, ""})
		if remote {
			out = append(out, a.remoteChecks(ctx, lv)...)
		}
		_ = lv.Disconnect()
	}
	out = append(out, hostChecks(realHost(), uri, a.paths)...)
	if remote {
		return out // KVM is the remote's: checked above
	}
	return append(out, a.kvmCheck(ctx))
}

// versionString is libvirt's encoded version (major*1000000 + minor*1000 + micro) as text.
func versionString(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// hostLibvirt is what the checks of a remote host need of its libvirt connection.
type hostLibvirt interface {
	vm.Libvirt
	vm.PoolLibvirt
	vm.ProbeLibvirt
}

// minPoolFree is the free space below which the artifact pool is a warning: a kernel, a
// base image and a few overlays.
const minPoolFree = 5 << 30

// remoteChecks checks a remote libvirt host: its CPUs and memory, kmodvm's artifact pool
// there and its free space, and whether KVM really runs a guest there (the cached kernel,
// uploaded to the pool once, booted in a throwaway guest).
func (a *app) remoteChecks(ctx context.Context, base vm.Libvirt) []check {
	lv, ok := base.(hostLibvirt)
	if !ok {
		return []check{{"remote", "warn", "this libvirt connection cannot check the host's storage and KVM", ""}}
	}
	var out []check
	if n, err := vm.NodeOf(lv); err != nil {
		out = append(out, check{"host", "warn", firstLine(err.Error()), ""})
	} else {
		fits := min(n.CPUs/max(a.cfg.VM.CPUs, 1), n.MemoryMiB/max(a.cfg.VM.Memory, 1))
		c := check{"host", "ok", fmt.Sprintf("%d CPUs, %d MiB: room for %d VMs of %d CPU and %d MiB", n.CPUs, n.MemoryMiB, fits, a.cfg.VM.CPUs, a.cfg.VM.Memory), ""}
		if fits == 0 {
			c.Status, c.Fix = "fail", "give the VMs fewer CPUs or less memory (vm.cpus, vm.memory in kmodvm.yaml)"
		}
		out = append(out, c)
	}
	pool, err := vm.OpenPool(ctx, lv, vm.PoolName, vm.PoolDir)
	if err != nil {
		return append(out, check{"pool", "fail", firstLine(err.Error()),
			"the URI's user needs libvirt's storage pools on the host (root, or the libvirt group), and " + filepath.Dir(vm.PoolDir) + " must exist there"})
	}
	c := check{"pool", "ok", "", ""}
	if free, err := pool.Available(); err != nil {
		c.Status, c.Detail = "warn", firstLine(err.Error())
	} else {
		c.Detail = fmt.Sprintf("storage pool %s at %s: %.1f GiB free", vm.PoolName, vm.PoolDir, float64(free)/(1<<30))
		if free < minPoolFree {
			c.Status, c.Fix = "warn", fmt.Sprintf("free space on the host's %s: kernels, images and overlays go there", vm.PoolDir)
		}
	}
	out = append(out, c)
	return append(out, a.remoteKVMCheck(ctx, lv, pool))
}

// remoteKVMCheck boots the cached kernel under KVM on the remote host.
func (a *app) remoteKVMCheck(ctx context.Context, lv vm.ProbeLibvirt, pool *vm.Pool) check {
	kernels := sandbox.CachedKernels(a.paths.Cache)
	if len(kernels) == 0 {
		return check{"kvm", "warn", "whether KVM runs guests on the host is checked once a kernel is built", "run `kmodvm kernel build`, then `kmodvm doctor --uri ...` again"}
	}
	key := filepath.Base(filepath.Dir(kernels[0])) // the kernel's cache key names its content
	path, err := pool.Put(ctx, key, filepath.Base(kernels[0]), kernels[0])
	if err != nil {
		return check{"kvm", "warn", "upload a test kernel to the host: " + firstLine(err.Error()), ""}
	}
	ok, detail, err := vm.ProbeKVMVia(ctx, lv, path, 0)
	switch {
	case err != nil:
		return check{"kvm", "warn", "KVM probe failed: " + firstLine(err.Error()), ""}
	case ok:
		return check{"kvm", "ok", "KVM runs guests on the host", ""}
	}
	return check{"kvm", "warn", "KVM cannot run guests on the host (" + detail + "): its guests would run under TCG, slowly", "check that the host's /dev/kvm exists and its QEMU may open it (kvm group), and nested virtualization if the host is a VM"}
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
