package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/sshclient"
)

// Options configure a Sandbox; the CLI fills them from kmodvm.yaml and flags.
type Options struct {
	State, Cache string
	Image        images.Spec
	Kernel       kernel.Request
	Jobs         int

	MemoryMiB, CPUs int
	Accel           vm.Accel // auto, kvm or tcg
	URI             string   // libvirt URI the domains live on; "" = qemu:///system
	// User is who the domains are defined for (owner metadata, DAC label, domain names);
	// nil = the process's user. LookupUser names another owner's uid in messages; nil =
	// the system's user database.
	User        *User
	LookupUser  func(uid int) string
	Port        int    // 0 = pick a free one
	QEMU        string // qemu-system-x86_64, for the KVM probe
	BootTimeout time.Duration
	// Cold makes `up` boot the VM instead of restoring a save (up --cold); a save of the
	// VM's own is dropped.
	Cold bool
	// ProbeKVM tells whether KVM runs guests here; nil means vm.ProbeKVM. The answer is
	// cached in State (see probeKVM); tests replace the probe.
	ProbeKVM func(ctx context.Context, p vm.AccelProbe) (ok bool, detail string, err error)

	Log            *slog.Logger
	Status         func(string)          // progress lines (stderr)
	KernelProgress func(kernel.Progress) // kernel build progress
}

// Sandbox manages kmodvm's VMs on one libvirt connection.
type Sandbox struct {
	opt Options
	lv  vm.Libvirt // the connection drv drives; a remote host's also holds its pool (remote.go)
	drv *vm.Driver
	// consoleStat reports the owner and size of the console log (see prepareConsoleLog).
	consoleStat func(path string) (uid int, size int64, err error)
	// fixGuest sets a restored guest's clock and random state (fixRestoredGuest); tests,
	// whose SSH server runs commands on the host, record instead.
	fixGuest func(ctx context.Context, c *sshclient.Client) error
	// freeSpace reports the free bytes of a directory's file system; createOverlay makes a
	// VM's overlay on its base disk (images.CreateOverlay). Tests replace both.
	freeSpace     func(dir string) (int64, error)
	createOverlay func(ctx context.Context, base, overlay string) error
}

// New returns a Sandbox on a libvirt connection (real or fake).
func New(lv vm.Libvirt, opt Options) *Sandbox {
	if opt.Log == nil {
		opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opt.Status == nil {
		opt.Status = func(string) {}
	}
	if opt.BootTimeout == 0 {
		opt.BootTimeout = 4 * time.Minute
	}
	if opt.QEMU == "" {
		opt.QEMU = "qemu-system-x86_64"
	}
	if opt.ProbeKVM == nil {
		opt.ProbeKVM = vm.ProbeKVM
	}
	if opt.User == nil {
		u := currentUser()
		opt.User = &u
	}
	if opt.LookupUser == nil {
		opt.LookupUser = lookupUserName
	}
	return &Sandbox{opt: opt, lv: lv, drv: vm.NewDriver(lv, opt.Log), consoleStat: statOwner,
		fixGuest: fixRestoredGuest, freeSpace: freeSpace, createOverlay: images.CreateOverlay}
}

// Artifacts are the built pieces a VM boots from.
type Artifacts struct {
	Root   *images.Root
	Kernel *kernel.Result
	Disk   *images.Disk
}

// kernelCache is where kernel builds live in the cache directory cache.
func kernelCache(cache string) string { return filepath.Join(cache, "kernels") }

// CachedKernels lists the kernel image of every kernel built in the cache directory cache.
func CachedKernels(cache string) []string { return kernel.CachedBzimages(kernelCache(cache)) }

func (s *Sandbox) kernelBuilder(root *images.Root) *kernel.Builder {
	return &kernel.Builder{
		Root: root, RootHash: root.Hash, Cache: kernelCache(s.opt.Cache),
		Jobs: s.opt.Jobs, Log: s.opt.Log, Progress: s.opt.KernelProgress,
	}
}

// BuildRoot returns the (cached) toolchain root.
func (s *Sandbox) BuildRoot(ctx context.Context) (*images.Root, error) {
	return images.BuildRoot(ctx, s.opt.Log, filepath.Join(s.opt.Cache, "images"), s.opt.Image, images.Progress(s.opt.Status))
}

// KernelBuilder returns the kernel builder of the (cached) toolchain root.
func (s *Sandbox) KernelBuilder(ctx context.Context) (*kernel.Builder, error) {
	root, err := s.BuildRoot(ctx)
	if err != nil {
		return nil, err
	}
	return s.kernelBuilder(root), nil
}

// Prepare builds (or finds cached) everything a VM boots from: root, kernel, disk.
func (s *Sandbox) Prepare(ctx context.Context) (*Artifacts, error) {
	root, err := s.BuildRoot(ctx)
	if err != nil {
		return nil, err
	}
	kr, err := s.kernelBuilder(root).Build(ctx, s.opt.Kernel)
	if err != nil {
		return nil, err
	}
	disk, err := images.BuildDisk(ctx, s.opt.Log, filepath.Join(s.opt.Cache, "images"), images.DiskSpec{
		Root: root, Extras: kr.Extras(), ExtrasKey: kr.Key,
	}, images.Progress(s.opt.Status))
	if err != nil {
		return nil, err
	}
	return &Artifacts{Root: root, Kernel: kr, Disk: disk}, nil
}

// Cmdline is the guest kernel command line: root on the virtio disk, serial console, a
// panic reboots at once (the domain's on_reboot=destroy then stops it, which is how a crash
// is noticed), an oops in a module does not panic, and an NMI panics (kmodvm sends one to a
// hung guest: the panic prints where it was stuck, even with interrupts off).
const Cmdline = "root=/dev/vda rw rootfstype=ext4 console=ttyS0,115200 init=" + images.GuestInit + " panic=-1 unknown_nmi_panic printk.devkmsg=on loglevel=7 net.ifnames=0"

// Up makes the named VM run with SSH ready: creates it (artifacts, overlay, domain) when it
// does not exist, starts it when stopped. A failed or interrupted first `up` leaves no
// domain, overlay or state behind.
func (s *Sandbox) Up(ctx context.Context, name string) (*Instance, *sshclient.Client, error) {
	if err := CheckName(name); err != nil {
		return nil, nil, err
	}
	in, err := loadInstance(s.opt.State, name)
	created := false
	switch {
	case errors.Is(err, os.ErrNotExist):
		dn := DomainName(s.opt.User.UID, name)
		if err := s.claim(ctx, name, dn, false); err != nil {
			return nil, nil, err
		}
		st, err := s.drv.State(ctx, dn)
		if err != nil {
			return nil, nil, err
		}
		if st != vm.StateMissing {
			return nil, nil, remedy.With(fmt.Errorf("the name %q is in use: libvirt already has a domain %s (%s) that kmodvm has no state for", name, dn, st), name, remedy.RemoveVM, remedy.PickName)
		}
		in, err = s.create(ctx, name)
		if err != nil {
			return nil, nil, err
		}
		created = true
	case err != nil:
		return nil, nil, err
	}
	unlock, err := lock(ctx, in.lockPath(), s.opt.Status)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()

	cleanup := func() {
		if !created {
			return
		}
		// Nothing of a first `up` that failed may stay behind.
		bg := context.WithoutCancel(ctx)
		_ = s.drv.Destroy(bg, in.DomainName())
		_ = s.drv.Undefine(bg, in.DomainName())
		_ = os.RemoveAll(in.dir)
	}
	c, err := s.boot(ctx, in, created)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return in, c, nil
}

// create builds the artifacts and the state dir of a new VM (not yet defined).
func (s *Sandbox) create(ctx context.Context, name string) (_ *Instance, err error) {
	art, err := s.Prepare(ctx)
	if err != nil {
		return nil, err
	}
	var accel vm.Accel
	if !s.remote() { // a remote host's KVM is probed there, with the uploaded kernel
		accel, err = s.resolveAccel(ctx, func(ctx context.Context) (bool, string, error) {
			return s.probeKVM(ctx, art.Kernel.Bzimage())
		})
		if err != nil {
			return nil, err
		}
	}
	// The same UUID for every VM of this name: its pristine save is tied to it.
	uuid := stableUUID(DomainName(s.opt.User.UID, name))
	dir := s.StateDir(name)
	if err := os.MkdirAll(vmsDir(s.opt.State), 0o700); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, remedy.WithNote(fmt.Errorf("VM %q is being created by another kmodvm", name), name, "wait for it, or", remedy.RemoveVM)
		}
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	in := &Instance{
		Name: name, Domain: DomainName(s.opt.User.UID, name), UUID: uuid, Accel: accel, MemoryMiB: s.opt.MemoryMiB, CPUs: s.opt.CPUs,
		SSHPort: s.opt.Port, FixedPort: s.opt.Port != 0,
		Kernel: art.Kernel.Bzimage(), Cmdline: Cmdline, KernelRelease: art.Kernel.Release,
		KernelKey: art.Kernel.Key, ConfigHash: art.Kernel.ConfigHash, Vmlinux: art.Kernel.Vmlinux(),
		Base: art.Disk.Base, DiskKey: art.Disk.Key, ClientKey: art.Disk.ClientKey, HostPub: art.Disk.HostPub,
		RootDir: art.Root.Dir, RootHash: art.Root.Hash, KDir: art.Kernel.KDir(),
		Toolchain: art.Kernel.Toolchain, Suite: s.opt.Image.Suite,
		Created: time.Now().UTC(), dir: dir,
	}
	if s.remote() {
		defer func() {
			if err != nil && in.Host != nil {
				_ = s.removeFromHost(context.WithoutCancel(ctx), in)
			}
		}()
		if err := s.placeOnHost(ctx, in, art); err != nil {
			return nil, err
		}
	} else if err := s.createOverlay(ctx, in.Base, in.Overlay()); err != nil {
		return nil, err
	}
	if err := in.save(); err != nil {
		return nil, err
	}
	return in, nil
}

// boot makes the VM run with SSH ready. A running domain is only waited for; a stopped one
// is defined (with a free port) and then restored from a save or booted, as planBoot decides:
// its own save (from `down`), its pristine save when its overlay is fresh (a new VM), else a
// cold boot — after which a fresh VM's guest is saved as its pristine save. A restore that
// fails is followed by a cold boot with a one-line notice, never by an error.
func (s *Sandbox) boot(ctx context.Context, in *Instance, fresh bool) (*sshclient.Client, error) {
	for _, p := range []string{in.Kernel, in.Base, in.ClientKey, in.HostPub} {
		if _, err := os.Stat(p); err != nil {
			return nil, remedy.With(fmt.Errorf("VM %q needs %s, which is gone from the cache", in.Name, p), in.Name, remedy.RecreateVM)
		}
	}
	dn := in.DomainName()
	if err := s.claim(ctx, in.Name, dn, in.legacy()); err != nil {
		return nil, err
	}
	st, err := s.drv.State(ctx, dn)
	if err != nil {
		return nil, err
	}
	if st == vm.StateRunning {
		return s.waitSSH(ctx, in)
	}
	if st != vm.StateMissing && st != vm.StateShutoff && st != vm.StateCrashed {
		if err := s.drv.Destroy(ctx, dn); err != nil {
			return nil, err
		}
	}
	if err := s.define(ctx, in); err != nil {
		return nil, err
	}
	facts, err := s.facts(ctx, in, fresh)
	if err != nil {
		return nil, err
	}
	plan := planBoot(facts)
	if plan.Notice != "" {
		s.opt.Status(plan.Notice)
	}
	if plan.DropOwn && plan.From != FromOwnSave {
		if err := dropOwnSave(in); err != nil {
			return nil, err
		}
	}
	switch plan.From {
	case FromOwnSave:
		s.opt.Status(fmt.Sprintf("resuming %s from its saved state (ssh on 127.0.0.1:%d)", in.Name, in.SSHPort))
		c, err := s.restoreFrom(ctx, in, in.OwnSave())
		// Used or broken, the save goes: from here on the disk moves on without it.
		if derr := dropOwnSave(in); derr != nil && err == nil {
			c.Close()
			return nil, derr
		}
		if err == nil {
			return c, s.setRestoredFrom(in, FromOwnSave)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.opt.Status(fmt.Sprintf("resuming %s from its saved state failed (%s); booting cold on its disk", in.Name, oneLine(err)))
		// A failed restore may have lost the port to someone else.
		if err := s.define(ctx, in); err != nil {
			return nil, err
		}
	case FromPristine:
		s.opt.Status(fmt.Sprintf("restoring %s from its pristine save (ssh on 127.0.0.1:%d)", in.Name, in.SSHPort))
		c, err := s.restorePristine(ctx, in, s.pristine(facts.Key))
		if err == nil {
			return c, s.setRestoredFrom(in, FromPristine)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s.opt.Status(fmt.Sprintf("restoring %s from its pristine save failed (%s); booting cold and saving afresh", in.Name, oneLine(err)))
		plan.MakeSaving = true
		// A failed restore may have lost the port to someone else.
		if err := s.define(ctx, in); err != nil {
			return nil, err
		}
	}
	c, err := s.coldBoot(ctx, in)
	if err != nil {
		return nil, err
	}
	if err := s.setRestoredFrom(in, ""); err != nil {
		c.Close()
		return nil, err
	}
	if plan.MakeSaving {
		if c = s.savePristine(ctx, in, facts.Key, c); c == nil {
			return nil, fmt.Errorf("VM %q stopped while kmodvm saved it; hint: see %s", in.Name, in.ConsoleLog())
		}
	}
	return c, nil
}

// define picks a free port for the stopped VM and defines its domain.
func (s *Sandbox) define(ctx context.Context, in *Instance) error {
	if err := s.pickPort(in); err != nil {
		return err
	}
	if err := s.drv.Define(ctx, in.DomainSpec(s.opt.URI, *s.opt.User)); err != nil {
		return err
	}
	if err := in.save(); err != nil {
		return err
	}
	return s.prepareConsoleLog(in)
}

// resolveAccel picks the accelerator the options ask for, probing KVM with probe when they
// leave it to kmodvm, and says why when it falls back.
func (s *Sandbox) resolveAccel(ctx context.Context, probe func(context.Context) (bool, string, error)) (vm.Accel, error) {
	accel, notice, err := vm.ResolveAccel(ctx, s.opt.Accel, probe)
	if err != nil {
		return "", err
	}
	if notice != "" {
		s.opt.Status(notice)
	}
	return accel, nil
}

// coldBoot starts the defined, stopped domain and waits for SSH.
func (s *Sandbox) coldBoot(ctx context.Context, in *Instance) (*sshclient.Client, error) {
	s.opt.Status(fmt.Sprintf("booting %s (%s, kernel %s, ssh on 127.0.0.1:%d)", in.Name, in.Accel, in.KernelRelease, in.SSHPort))
	err := s.drv.Start(ctx, in.DomainName())
	// A remote host's port was picked blind: one taken there makes QEMU fail; pick again.
	for try := 0; err != nil && in.Host != nil && !in.FixedPort && strings.Contains(err.Error(), "host forwarding rule") && try < 3; try++ {
		if err = s.define(ctx, in); err == nil {
			err = s.drv.Start(ctx, in.DomainName())
		}
	}
	if err != nil {
		_ = s.SyncConsole(ctx, in)
		return nil, fmt.Errorf("start VM %q: %w; hint: see %s", in.Name, err, in.ConsoleLog())
	}
	return s.waitSSH(ctx, in)
}

// setRestoredFrom remembers where the running guest came from.
func (s *Sandbox) setRestoredFrom(in *Instance, from string) error {
	if in.RestoredFrom == from {
		return nil
	}
	in.RestoredFrom = from
	return in.save()
}

// oneLine is err's text on one line, for a notice.
func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

func (s *Sandbox) waitSSH(ctx context.Context, in *Instance) (*sshclient.Client, error) {
	return s.waitSSHWithin(ctx, in, s.opt.BootTimeout)
}

// waitSSHWithin waits up to timeout for the running guest's SSH.
func (s *Sandbox) waitSSHWithin(ctx context.Context, in *Instance, timeout time.Duration) (*sshclient.Client, error) {
	cfg, err := s.sshConfig(in)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dn := in.DomainName()
	c, err := sshclient.Wait(wctx, cfg, func() error {
		st, err := s.drv.State(ctx, dn)
		if err != nil {
			return err
		}
		if st != vm.StateRunning {
			return fmt.Errorf("the guest stopped (%s) before SSH came up", st)
		}
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		reason := err.Error()
		_ = s.SyncConsole(ctx, in)
		if wctx.Err() != nil {
			reason = fmt.Sprintf("no SSH after %s", timeout)
		}
		return nil, fmt.Errorf("VM %q did not become ready: %s; last console lines:\n%s\nhint: full console log in %s",
			in.Name, reason, indent(ConsoleTail(in.ConsoleLog(), 15)), in.ConsoleLog())
	}
	return c, nil
}

// pickPort keeps the VM's port if it is free, else picks a new free one (a port the user
// fixed is an error instead).
func (s *Sandbox) pickPort(in *Instance) error {
	if in.Host != nil {
		pickRemotePort(in)
		return nil
	}
	if in.SSHPort != 0 && portFree(in.SSHPort) {
		return nil
	}
	if in.FixedPort {
		return fmt.Errorf("port %d on 127.0.0.1 is already in use, so VM %q cannot forward SSH to it; hint: set vm.port in kmodvm.yaml to another port, or to 0 to pick a free one", in.SSHPort, in.Name)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("find a free port: %w", err)
	}
	in.SSHPort = l.Addr().(*net.TCPAddr).Port
	return l.Close()
}

func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Connect returns an SSH connection to a running VM.
func (s *Sandbox) Connect(ctx context.Context, name string) (*Instance, *sshclient.Client, error) {
	in, err := s.Instance(name)
	if err != nil {
		return nil, nil, err
	}
	dn := in.DomainName()
	st, err := s.drv.State(ctx, dn)
	if err != nil {
		return nil, nil, err
	}
	if st != vm.StateRunning {
		return nil, nil, remedy.With(fmt.Errorf("VM %q is %s", name, st), name, remedy.StartVM)
	}
	cfg, err := s.sshConfig(in)
	if err != nil {
		return nil, nil, err
	}
	// The guest is up, but on a loaded host (a TCG guest next to a host build, which `run`
	// starts while it connects) its sshd can take longer than one banner probe to answer:
	// keep probing for a while. A wrong host key or a refused login still ends it at once.
	wctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := sshclient.Wait(wctx, cfg, func() error {
		st, err := s.drv.State(ctx, dn)
		if err == nil && st != vm.StateRunning {
			err = remedy.With(fmt.Errorf("VM %q stopped (%s)", name, st), name, remedy.StartVM)
		}
		return err
	})
	switch {
	case err == nil:
		return in, c, nil
	case ctx.Err() != nil:
		return nil, nil, err // says how far it got
	case wctx.Err() != nil:
		return nil, nil, remedy.With(fmt.Errorf("VM %q is running but its SSH did not answer within %s (%v)", name, connectTimeout, err),
			name, remedy.ShowConsole, remedy.RestartVM)
	}
	return nil, nil, err
}

// connectTimeout bounds how long Connect waits for a running guest's sshd. With TCG guests
// next to kernel builds on 2 cores, its answer was seen to take more than 30 s.
const connectTimeout = 60 * time.Second

// Running says whether the named VM exists and its domain is running: what decides whether
// a module run starts the VM first. A VM that does not exist is not running.
func (s *Sandbox) Running(ctx context.Context, name string) (bool, error) {
	if err := CheckName(name); err != nil {
		return false, err
	}
	in, err := loadInstance(s.opt.State, name)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	}
	if err := s.claim(ctx, name, in.DomainName(), in.legacy()); err != nil {
		return false, err
	}
	st, err := s.drv.State(ctx, in.DomainName())
	return st == vm.StateRunning, err
}

// Instance returns the VM's remembered state or a clear error.
func (s *Sandbox) Instance(name string) (*Instance, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	in, err := loadInstance(s.opt.State, name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, remedy.With(fmt.Errorf("there is no VM named %q", name), name, remedy.CreateVM, remedy.ListVMs)
	}
	return in, err
}

// Restart stops the domain hard and brings the guest back after a crash or hang: by
// restoring its pristine save when there is one for the VM's key (the guest's own changes
// since its up are gone: its overlay is replaced by the pristine one), else by booting it
// again. how says which: "restored" or "rebooted".
func (s *Sandbox) Restart(ctx context.Context, in *Instance) (_ *sshclient.Client, how string, err error) {
	dn := in.DomainName()
	if err := s.claim(ctx, in.Name, dn, in.legacy()); err != nil {
		return nil, "", err
	}
	if err := s.drv.Destroy(ctx, dn); err != nil {
		return nil, "", err
	}
	fresh := false
	if s.savesUsable() {
		key, err := s.saveKey(ctx, in)
		if err != nil {
			return nil, "", err
		}
		if dir := s.pristine(key); dir != "" {
			fresh = true // restorePristine leaves a fresh overlay when it fails
			if err := s.define(ctx, in); err != nil {
				return nil, "", err
			}
			s.opt.Status(fmt.Sprintf("restoring %s from its pristine save", in.Name))
			c, err := s.restorePristine(ctx, in, dir)
			if err == nil {
				return c, "restored", s.setRestoredFrom(in, FromPristine)
			}
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			s.opt.Status(fmt.Sprintf("restoring %s from its pristine save failed (%s); booting it on a fresh disk", in.Name, oneLine(err)))
		}
	}
	c, err := s.boot(ctx, in, fresh)
	if err != nil {
		return nil, "", err
	}
	return c, "rebooted", nil
}

// Stopped says how Down stopped a VM.
type Stopped string

const (
	StoppedSaved      Stopped = "saved"       // its state saved: the next up resumes it
	StoppedShutdown   Stopped = "shutdown"    // a clean shutdown
	StoppedHard       Stopped = "hard"        // no clean shutdown within the timeout: stopped hard
	StoppedNotRunning Stopped = "not-running" // it was not running: nothing to do
)

// Down stops a VM: its state saved when saves are usable, else a clean shutdown over SSH,
// then a hard stop after timeout. It says which.
func (s *Sandbox) Down(ctx context.Context, name string, timeout time.Duration) (Stopped, error) {
	in, err := s.Instance(name)
	if err != nil {
		return "", err
	}
	unlock, err := lock(ctx, in.lockPath(), s.opt.Status)
	if err != nil {
		return "", err
	}
	defer unlock()
	dn := in.DomainName()
	if err := s.claim(ctx, name, dn, in.legacy()); err != nil {
		return "", err
	}
	st, err := s.drv.State(ctx, dn)
	if err != nil {
		return "", err
	}
	if st != vm.StateRunning {
		return StoppedNotRunning, nil
	}
	if s.ownSave(ctx, in) {
		return StoppedSaved, nil
	}
	if cfg, err := s.sshConfig(in); err == nil {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if c, err := sshclient.Dial(dctx, cfg); err == nil {
			_, _ = c.Run(dctx, images.GuestPoweroff, nil, io.Discard, io.Discard)
			c.Close()
		}
		cancel()
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := s.drv.WaitState(wctx, dn, vm.StateShutoff, 200*time.Millisecond); err == nil {
		return StoppedShutdown, nil
	} else if ctx.Err() != nil {
		return "", ctx.Err()
	}
	s.opt.Status(fmt.Sprintf("%s did not stop within %s; stopping it hard", name, timeout))
	if err := s.drv.Destroy(ctx, dn); err != nil {
		return "", err
	}
	return StoppedHard, nil
}

// Destroy removes a VM: domain, overlay and state. It also cleans up a domain of this user
// whose state directory was deleted behind kmodvm's back; it never touches a domain another
// user (or another state directory) owns.
func (s *Sandbox) Destroy(ctx context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	dn, legacy := s.domainOf(name)
	if err := s.claim(ctx, name, dn, legacy); err != nil {
		return err
	}
	st, err := s.drv.State(ctx, dn)
	if err != nil {
		return err
	}
	dir := s.StateDir(name)
	_, statErr := os.Stat(dir)
	if st == vm.StateMissing && errors.Is(statErr, os.ErrNotExist) {
		return remedy.With(fmt.Errorf("there is no VM named %q (no domain %s, no state in %s)", name, dn, dir), name, remedy.ListVMs)
	}
	if st != vm.StateMissing {
		if err := s.drv.Destroy(ctx, dn); err != nil {
			return err
		}
		if err := s.drv.Undefine(ctx, dn); err != nil {
			return err
		}
	}
	if in, err := loadInstance(s.opt.State, name); err == nil && in.Host != nil {
		if err := s.removeFromHost(ctx, in); err != nil {
			return fmt.Errorf("remove VM %q's disk from %s: %w", name, s.opt.URI, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove state of VM %q: %w", name, err)
	}
	return nil
}

// Status is what `kmodvm status` and `list` report.
type Status struct {
	Name          string            `json:"name"`
	State         string            `json:"state"`
	Accel         string            `json:"accel,omitempty"`
	SSHPort       int               `json:"ssh_port,omitempty"`
	KernelRelease string            `json:"kernel_release,omitempty"`
	ConfigHash    string            `json:"config_hash,omitempty"`
	KernelDebug   bool              `json:"kernel_debug,omitempty"` // the debug variant
	Toolchain     map[string]string `json:"toolchain,omitempty"`
	Uptime        string            `json:"uptime,omitempty"`
	UptimeSeconds float64           `json:"uptime_seconds,omitempty"`
	StateDir      string            `json:"state_dir"`
	ConsoleLog    string            `json:"console_log,omitempty"`
	// RestoredFrom says where the running guest came from: "pristine" (its pristine save),
	// "own save" (the state `down` saved) or "" (it booted).
	RestoredFrom string `json:"restored_from"`
	// SaveBytes is the size of the state `down` saved (0: none); PristineSaveBytes that of
	// the VM's pristine save, memory and overlay (0: none for its kernel, image, settings and
	// libvirt/QEMU versions).
	SaveBytes         int64  `json:"save_bytes"`
	PristineSaveBytes int64  `json:"pristine_save_bytes"`
	Problem           string `json:"problem,omitempty"`
	// Fix is what the user can do about Problem; the CLI renders it into Problem's text.
	Fix []remedy.Action `json:"-"`
}

// Status reports one VM. A domain without state dir (or the reverse) is reported as such.
func (s *Sandbox) Status(ctx context.Context, name string) (Status, error) {
	if err := CheckName(name); err != nil {
		return Status{}, err
	}
	dn, legacy := s.domainOf(name)
	out := Status{Name: name, StateDir: s.StateDir(name)}
	// A domain of that name that is someone else's says nothing about this VM.
	notOurs := s.claim(ctx, name, dn, legacy)
	if notOurs != nil && !isNotOurs(notOurs) {
		return Status{}, notOurs
	}
	st := vm.StateUnknown
	if notOurs == nil {
		var err error
		if st, err = s.drv.State(ctx, dn); err != nil {
			return Status{}, err
		}
	}
	out.State = string(st)
	in, err := loadInstance(s.opt.State, name)
	if errors.Is(err, os.ErrNotExist) && notOurs != nil {
		return Status{}, notOurs
	}
	switch {
	case errors.Is(err, os.ErrNotExist) && st == vm.StateMissing:
		return Status{}, remedy.With(fmt.Errorf("there is no VM named %q", name), name, remedy.CreateVM)
	case errors.Is(err, os.ErrNotExist):
		out.Problem = fmt.Sprintf("libvirt has domain %s but its state directory is gone", dn)
		out.Fix = []remedy.Action{remedy.RemoveVM}
		return out, nil
	case err != nil:
		return Status{}, err
	}
	out.Accel, out.SSHPort, out.KernelRelease, out.ConfigHash = string(in.Accel), in.SSHPort, in.KernelRelease, in.ConfigHash
	out.Toolchain, out.ConsoleLog, out.KernelDebug = in.Toolchain, in.ConsoleLog(), in.Vmlinux != ""
	if notOurs != nil {
		out.Problem = notOurs.Error()
		return out, nil
	}
	out.SaveBytes = fileSize(in.OwnSave())
	if st == vm.StateRunning {
		out.RestoredFrom = in.RestoredFrom
	}
	if s.savesUsable() {
		if key, err := s.saveKey(ctx, in); err == nil {
			out.PristineSaveBytes = pristineSize(s.pristine(key))
		}
	}
	if st == vm.StateMissing {
		out.Problem = fmt.Sprintf("the state directory exists but libvirt has no domain %s", dn)
		out.Fix = []remedy.Action{remedy.StartVM}
	}
	if st == vm.StateRunning {
		cfg, err := s.sshConfig(in)
		if err != nil {
			out.Problem = "cannot use the VM's SSH keys: " + err.Error()
		} else {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if c, err := sshclient.Dial(sctx, cfg); err == nil {
				if b, err := c.Output(sctx, "cat /proc/uptime"); err == nil {
					var up float64
					if _, err := fmt.Sscanf(string(b), "%f", &up); err == nil {
						out.UptimeSeconds = up
						out.Uptime = (time.Duration(up) * time.Second).String()
					}
				}
				c.Close()
			} else {
				out.Problem = "SSH is not answering: " + err.Error()
			}
			cancel()
		}
	}
	return out, nil
}

// List reports every VM kmodvm knows of (state dirs and kmodvm-* domains).
func (s *Sandbox) List(ctx context.Context) ([]Status, error) {
	names, err := listInstances(s.opt.State)
	if err != nil {
		return nil, err
	}
	var out []Status
	for _, n := range names {
		st, err := s.Status(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// ConsoleTail returns the last n lines of a console log ("" when unreadable).
func ConsoleTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		if why := ConsoleUnreadable(path); why != "" {
			return "(no console output: " + why + ")"
		}
		return "(no console output: " + err.Error() + ")"
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	const max = 64 << 10
	off := st.Size() - max
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	text := strings.ReplaceAll(string(buf), "\r", "")
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// lock takes the VM's lock, saying so when it has to wait for another kmodvm.
func lock(ctx context.Context, path string, status func(string)) (func(), error) {
	return ondisk.Lock(ctx, path, func() {
		status("waiting for another kmodvm command using this VM to finish...")
	})
}

// BuiltKernel returns the kernel the options select when it is built (its toolchain root
// and its entry cached), building nothing; nil when it is not built.
func (s *Sandbox) BuiltKernel(ctx context.Context) (*kernel.Result, error) {
	kb, err := s.BuiltRootKernelBuilder()
	if errors.Is(err, images.ErrNotBuilt) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return kb.Lookup(ctx, s.opt.Kernel)
}

// BuiltRootKernelBuilder returns the kernel builder of the toolchain root the options
// select when that root is built, building nothing: an error wrapping images.ErrNotBuilt
// when it is not.
func (s *Sandbox) BuiltRootKernelBuilder() (*kernel.Builder, error) {
	root, err := s.BuiltRoot()
	if err != nil {
		return nil, err
	}
	return s.kernelBuilder(root), nil
}

// BuiltRoot returns the toolchain root the options select, building nothing: an error
// wrapping images.ErrNotBuilt when it is not built.
func (s *Sandbox) BuiltRoot() (*images.Root, error) {
	return images.OpenRoot(filepath.Join(s.opt.Cache, "images"), s.opt.Image)
}
