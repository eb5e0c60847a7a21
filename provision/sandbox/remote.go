package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/remotehost"
	"github.com/kmodvm/kmodvm/vm/sshclient"
)

// A VM on a remote libvirt host (qemu+ssh://) boots from files on that host: its kernel and
// base disk are uploaded once into the host's artifact pool (vm.Pool), shared by every VM
// and user there; its overlay and console log are volumes of its own in the pool. Its SSH
// forward listens on the host's 127.0.0.1 and is reached through the libvirt connection's
// SSH connection. Module builds stay here (the .ko is shipped over the guest's SSH).

// HostFiles are the paths on the libvirt host a remote VM's domain names.
type HostFiles struct {
	Kernel  string `json:"kernel"`
	Base    string `json:"base_disk"`
	Overlay string `json:"overlay"`
	Console string `json:"console_log"`
}

// hostLibvirt is what a VM on a remote host needs of the libvirt connection.
type hostLibvirt interface {
	vm.PoolLibvirt
	vm.ProbeLibvirt
	DialHostLoopback(ctx context.Context, port int) (net.Conn, error)
}

func (s *Sandbox) remote() bool { return remotehost.IsRemote(s.opt.URI) }

// host is the connection as a remote host's, or an error saying it cannot be.
func (s *Sandbox) host() (hostLibvirt, error) {
	h, ok := s.lv.(hostLibvirt)
	if !ok {
		return nil, fmt.Errorf("the libvirt connection to %s cannot reach the host's storage and loopback", s.opt.URI)
	}
	return h, nil
}

// overlayVolume and consoleVolume name a VM's own volumes in the pool.
func overlayVolume(in *Instance) string { return in.DomainName() + ".qcow2" }
func consoleVolume(in *Instance) string { return in.DomainName() + ".console.log" }

// placeOnHost uploads the kernel and base disk to the host's pool (once per host), creates
// the VM's overlay and console log there, and resolves the accelerator by booting the
// kernel on the host under KVM.
func (s *Sandbox) placeOnHost(ctx context.Context, in *Instance, art *Artifacts) error {
	h, err := s.host()
	if err != nil {
		return err
	}
	pool, err := vm.OpenPool(ctx, h, vm.PoolName, vm.PoolDir)
	if err != nil {
		return fmt.Errorf("VM %q: %w", in.Name, err)
	}
	pool.Progress = s.uploadProgress()
	var hf HostFiles
	if hf.Kernel, err = pool.Put(ctx, art.Kernel.Key, "bzImage", art.Kernel.Bzimage()); err != nil {
		return err
	}
	if in.Accel, err = s.resolveAccel(ctx, func(ctx context.Context) (bool, string, error) {
		return vm.ProbeKVMVia(ctx, h, hf.Kernel, 0)
	}); err != nil {
		return err
	}
	if hf.Base, err = pool.Put(ctx, art.Disk.Key, "base.qcow2", art.Disk.Base); err != nil {
		return err
	}
	size, err := images.QCOW2VirtualSize(art.Disk.Base)
	if err != nil {
		return err
	}
	if hf.Overlay, err = pool.Overlay(ctx, overlayVolume(in), hf.Base, size); err != nil {
		return err
	}
	if hf.Console, err = pool.Empty(ctx, consoleVolume(in)); err != nil {
		return err
	}
	in.Host = &hf
	return nil
}

// uploadProgress says how an upload goes, every 10%.
func (s *Sandbox) uploadProgress() func(name string, done, total int64) {
	last := -1
	start := time.Now()
	return func(name string, done, total int64) {
		pct := int(done * 100 / max(total, 1))
		if pct/10 == last/10 && done != total {
			return
		}
		last = pct
		s.opt.Status(fmt.Sprintf("uploading %s to %s: %d%% of %.1f MiB (%.1f s)", name, s.opt.URI, pct, float64(total)/(1<<20), time.Since(start).Seconds()))
	}
}

// hostPool opens kmodvm's storage pool on the remote host.
func (s *Sandbox) hostPool(ctx context.Context) (*vm.Pool, error) {
	h, err := s.host()
	if err != nil {
		return nil, err
	}
	return vm.OpenPool(ctx, h, vm.PoolName, vm.PoolDir)
}

// removeFromHost removes the VM's own volumes from the host's pool (the shared kernel and
// base disk stay for the next VM).
func (s *Sandbox) removeFromHost(ctx context.Context, in *Instance) error {
	pool, err := s.hostPool(ctx)
	if err != nil {
		return err
	}
	return errors.Join(pool.Remove(ctx, overlayVolume(in)), pool.Remove(ctx, consoleVolume(in)))
}

// SyncConsole brings the local copy of a remote VM's console log (in.ConsoleLog()) up to
// date with the host's, appending what is new; a local VM's log is the file itself.
func (s *Sandbox) SyncConsole(ctx context.Context, in *Instance) error {
	if in.Host == nil {
		return nil
	}
	pool, err := s.hostPool(ctx)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(in.ConsoleLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("console log of VM %q: %w", in.Name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return pool.Download(ctx, consoleVolume(in), uint64(st.Size()), f)
}

// sshConfig is how to reach the guest: on the local 127.0.0.1, or through the remote
// host's SSH connection to its 127.0.0.1.
func (s *Sandbox) sshConfig(in *Instance) (sshclient.Config, error) {
	cfg, err := in.SSHConfig()
	if err != nil || in.Host == nil {
		return cfg, err
	}
	h, err := s.host()
	if err != nil {
		return cfg, err
	}
	port := in.SSHPort
	cfg.Dial = func(ctx context.Context, _, _ string) (net.Conn, error) { return h.DialHostLoopback(ctx, port) }
	return cfg, nil
}

// pickRemotePort picks a port for the guest's SSH forward on the host's 127.0.0.1. It cannot
// be checked from here; one taken makes the start fail, and the start picks again.
func pickRemotePort(in *Instance) {
	if !in.FixedPort {
		in.SSHPort = 20000 + rand.IntN(40000)
	}
}
