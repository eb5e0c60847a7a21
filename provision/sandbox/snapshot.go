package sandbox

// Saved guests: instead of booting, `up` restores a guest saved right after it became
// SSH-ready, and `run` recovers a crashed guest the same way.
//
// A save is a pair: the guest's memory (libvirt's save file) and its disk overlay exactly as
// it was at that instant. Memory never goes on top of a disk that changed since, so:
//   - the pristine save of a VM is a cache entry (saves/<key>/: memory.save, overlay.qcow2,
//     save.json), filled once after the VM's first cold boot; a restore copies its overlay
//     into the VM's state directory and restores the memory on that copy;
//   - `down` saves the VM's memory into its state directory (memory.save, memory.json) and
//     keeps its overlay in place; the next `up` restores it and deletes it (the disk moves on
//     from there), and anything else that boots the VM deletes it first.
//
// libvirt ties a save to the domain's UUID (its ABI check rejects a restore under another
// UUID), so a pristine save belongs to one VM: new VMs get a UUID derived from their domain
// name (stableUUID), and the save's key holds it together with everything else a save is
// only valid for (saveKey). A save whose key differs is not used; any restore that fails is
// followed by a cold boot with a one-line notice, and the broken save is removed.

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/shellquote"
	"github.com/kmodvm/kmodvm/vm/sshclient"
)

// Where a running guest came from (Instance.RestoredFrom, status's restored_from).
const (
	FromPristine = "pristine" // a copy of the VM's pristine save
	FromOwnSave  = "own save" // the state `down` saved
)

// saveFormat is the version of the save layout below; part of every key.
const saveFormat = 1

// saveKey is everything a save is only valid for: the guest's machine (its ABI as libvirt
// checks it: UUID, accel, memory, vCPUs, the domain's shape), what it booted (kernel, command
// line, base disk) and what saved it (libvirt and QEMU, whose formats change between
// versions).
type saveKey struct {
	Format       int      `json:"format"`
	DomainFormat int      `json:"domain_format"`
	UUID         string   `json:"uuid"`
	Accel        vm.Accel `json:"accel"`
	MemoryMiB    int      `json:"memory_mib"`
	CPUs         int      `json:"cpus"`
	Kernel       string   `json:"kernel"`
	KernelKey    string   `json:"kernel_key"`
	Cmdline      string   `json:"cmdline"`
	DiskKey      string   `json:"disk_key"`
	Libvirt      uint64   `json:"libvirt"`
	QEMU         uint64   `json:"qemu"`
}

// hash names the pristine save's cache entry.
func (k saveKey) hash() string {
	b, _ := json.Marshal(k)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

// stale says what differs between a save made under k and the current key now, "" when
// nothing does.
func (k saveKey) stale(now saveKey) string {
	var why []string
	add := func(differs bool, what string) {
		if differs {
			why = append(why, what)
		}
	}
	add(k.Format != now.Format || k.DomainFormat != now.DomainFormat, "kmodvm's save format changed")
	add(k.UUID != now.UUID, "another domain UUID")
	add(k.Accel != now.Accel, fmt.Sprintf("accel %s, now %s", k.Accel, now.Accel))
	add(k.MemoryMiB != now.MemoryMiB, fmt.Sprintf("%d MiB of memory, now %d", k.MemoryMiB, now.MemoryMiB))
	add(k.CPUs != now.CPUs, fmt.Sprintf("%d vCPUs, now %d", k.CPUs, now.CPUs))
	add(k.Kernel != now.Kernel || k.KernelKey != now.KernelKey || k.Cmdline != now.Cmdline, "another kernel")
	add(k.DiskKey != now.DiskKey, "another image")
	add(k.Libvirt != now.Libvirt, fmt.Sprintf("libvirt %s, now %s", version(k.Libvirt), version(now.Libvirt)))
	add(k.QEMU != now.QEMU, fmt.Sprintf("QEMU %s, now %s", version(k.QEMU), version(now.QEMU)))
	return strings.Join(why, ", ")
}

// version renders libvirt's encoding of a version (major*1000000 + minor*1000 + micro).
func version(v uint64) string {
	return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000)
}

// saveMeta is save.json (pristine) and memory.json (own save).
type saveMeta struct {
	Key     saveKey   `json:"key"`
	VM      string    `json:"vm"`
	Created time.Time `json:"created"`
}

// stableUUID is the libvirt UUID of a new VM with domain name dn: the same for every VM of
// that name, so that the VM's pristine save (tied to its UUID) restores into its next
// incarnation after a destroy. A name-based (version 5 style) UUID.
func stableUUID(dn string) string {
	sum := sha1.Sum([]byte("kmodvm domain " + dn))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// savesDir holds the pristine saves in the cache directory cache.
func savesDir(cache string) string { return filepath.Join(cache, "saves") }

// Files of a save.
const (
	memoryFile  = "memory.save"
	overlayFile = "overlay.qcow2"
	metaFile    = "save.json"
)

// OwnSave is the memory file `down` saved the VM's state to; OwnSaveMeta its key.
func (in *Instance) OwnSave() string     { return filepath.Join(in.dir, memoryFile) }
func (in *Instance) OwnSaveMeta() string { return filepath.Join(in.dir, "memory.json") }

// saveKey computes the key of in's saves on this connection.
func (s *Sandbox) saveKey(ctx context.Context, in *Instance) (saveKey, error) {
	lv, qemu, err := s.drv.Versions(ctx)
	if err != nil {
		return saveKey{}, err
	}
	return saveKey{
		Format: saveFormat, DomainFormat: vm.DomainFormat, UUID: strings.ToLower(in.UUID),
		Accel: in.Accel, MemoryMiB: in.MemoryMiB, CPUs: in.CPUs,
		Kernel: in.Kernel, KernelKey: in.KernelKey, Cmdline: in.Cmdline, DiskKey: in.DiskKey,
		Libvirt: lv, QEMU: qemu,
	}, nil
}

// savesUsable says whether saves work on this connection: libvirtd writes and reads the save
// files at the paths kmodvm gives, which are local ones.
func (s *Sandbox) savesUsable() bool {
	u := s.opt.URI
	return u == "" || isLocalSystem(u) || strings.HasPrefix(u, vm.URISession)
}

// readMeta reads a save's key file.
func readMeta(path string) (*saveMeta, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m saveMeta
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return &m, nil
}

// pristine returns the directory of in's pristine save for key, "" when there is none.
func (s *Sandbox) pristine(key saveKey) string {
	dir := filepath.Join(savesDir(s.opt.Cache), key.hash())
	for _, f := range []string{memoryFile, overlayFile, metaFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			return ""
		}
	}
	return dir
}

// bootFacts is what decides how a stopped VM starts (see planBoot).
type bootFacts struct {
	Cold   bool // up --cold
	Usable bool // saves work on this connection (savesUsable)
	// Fresh: the VM's overlay is new, nothing ran on it, so a copy of the pristine overlay
	// may take its place. Only a new VM's is; an existing VM's disk is the user's.
	Fresh bool
	// Own is the VM's own save's key file (nil: none, or unreadable: OwnErr); OwnMemory
	// whether its memory file is there.
	Own       *saveMeta
	OwnErr    error
	OwnMemory bool
	Key       saveKey // the current key
	Pristine  bool    // a pristine save exists for Key
}

// bootPlan is how a stopped VM starts.
type bootPlan struct {
	From       string // FromOwnSave, FromPristine, or "" (a cold boot)
	DropOwn    bool   // delete the VM's own save first
	Notice     string // one line for the user, "" when nothing needs saying
	MakeSaving bool   // after a cold boot, save the pristine guest
}

// planBoot decides how a stopped VM starts. A save is used only when it fits the current
// key; an own save that does not is dropped with a notice (the disk stays: the guest boots
// cold on it, like after a power cut); the pristine save is only for a fresh overlay.
func planBoot(f bootFacts) bootPlan {
	var p bootPlan
	hasOwn := f.Own != nil || f.OwnErr != nil || f.OwnMemory
	if hasOwn {
		p.DropOwn = true
		switch {
		case f.Cold:
			p.Notice = "up --cold: dropping the VM's saved state; it boots afresh on its disk"
		case f.OwnErr != nil:
			p.Notice = fmt.Sprintf("the VM's saved state is unreadable (%v); booting cold on its disk", f.OwnErr)
		case f.Own == nil || !f.OwnMemory:
			p.Notice = "the VM's saved state is incomplete; booting cold on its disk"
		case !f.Usable:
			p.Notice = "the VM's saved state cannot be restored over this libvirt connection; booting cold on its disk"
		default:
			if why := f.Own.Key.stale(f.Key); why != "" {
				p.Notice = "the VM's saved state is stale (" + why + "); booting cold on its disk"
			} else {
				p.From = FromOwnSave
			}
		}
		return p
	}
	if f.Cold || !f.Fresh || !f.Usable {
		return p
	}
	if f.Pristine {
		p.From = FromPristine
		return p
	}
	p.MakeSaving = true
	return p
}

// dropOwnSave deletes the VM's own save.
func dropOwnSave(in *Instance) error {
	var errs []error
	for _, p := range []string{in.OwnSaveMeta(), in.OwnSave()} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove the saved state of VM %q: %w", in.Name, err)
	}
	return nil
}

// facts gathers what planBoot decides on for in.
func (s *Sandbox) facts(ctx context.Context, in *Instance, fresh bool) (bootFacts, error) {
	f := bootFacts{Cold: s.opt.Cold, Usable: s.savesUsable(), Fresh: fresh}
	f.Own, f.OwnErr = readMeta(in.OwnSaveMeta())
	if errors.Is(f.OwnErr, os.ErrNotExist) {
		f.OwnErr = nil
	}
	_, err := os.Stat(in.OwnSave())
	f.OwnMemory = err == nil
	if !f.Usable {
		return f, nil
	}
	key, err := s.saveKey(ctx, in)
	if err != nil {
		return f, err
	}
	f.Key = key
	f.Pristine = s.pristine(key) != ""
	return f, nil
}

// restoreSSHWait bounds the wait for a restored guest's SSH: it was answering at save time,
// so a guest that does not answer within this is broken and boots cold instead.
const restoreSSHWait = 60 * time.Second

// restoreFrom starts the stopped, defined domain of in from the save file memory, waits for
// its SSH and sets its clock and random state. On failure the domain is stopped again.
func (s *Sandbox) restoreFrom(ctx context.Context, in *Instance, memory string) (_ *sshclient.Client, err error) {
	dn := in.DomainName()
	defer func() {
		if err != nil {
			_ = s.drv.Destroy(context.WithoutCancel(ctx), dn)
		}
	}()
	saved, err := s.drv.SavedXML(ctx, memory)
	if err != nil {
		return nil, err
	}
	x, err := vm.RestoreXML(saved, in.DomainSpec(s.opt.URI, *s.opt.User))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := s.drv.Restore(ctx, memory, x); err != nil {
		return nil, err
	}
	restored := time.Now()
	c, err := s.waitSSHWithin(ctx, in, min(restoreSSHWait, s.opt.BootTimeout))
	if err != nil {
		return nil, err
	}
	answered := time.Now()
	if err := s.fixGuest(ctx, c); err != nil {
		c.Close()
		return nil, fmt.Errorf("fix up the restored guest: %w", err)
	}
	s.opt.Log.Debug("restored guest ready", "domain", dn, "restore", restored.Sub(start), "ssh", answered.Sub(restored), "fix", time.Since(answered))
	return c, nil
}

// restorePristine puts a copy of the pristine save's overlay in place of in's and restores
// its memory. On failure the save is removed (it is broken, or stale in a way the key did
// not catch) and in gets a fresh overlay from its base disk, ready for a cold boot.
func (s *Sandbox) restorePristine(ctx context.Context, in *Instance, dir string) (*sshclient.Client, error) {
	c, err := s.copyAndRestore(ctx, in, dir)
	if err == nil {
		touchPristine(dir)
		return c, nil
	}
	bg := context.WithoutCancel(ctx)
	if rerr := ondisk.RemoveTree(dir); rerr != nil {
		s.opt.Log.Warn("cannot remove a broken pristine save", "dir", dir, "err", rerr)
	}
	if ferr := s.freshOverlay(bg, in); ferr != nil {
		return nil, errors.Join(err, ferr)
	}
	return nil, err
}

func (s *Sandbox) copyAndRestore(ctx context.Context, in *Instance, dir string) (*sshclient.Client, error) {
	if err := ondisk.CopyFile(filepath.Join(dir, overlayFile), in.Overlay()); err != nil {
		return nil, fmt.Errorf("copy the pristine overlay into VM %q: %w", in.Name, err)
	}
	if err := os.Chmod(in.Overlay(), 0o600); err != nil {
		return nil, fmt.Errorf("copy the pristine overlay into VM %q: %w", in.Name, err)
	}
	return s.restoreFrom(ctx, in, filepath.Join(dir, memoryFile))
}

// freshOverlay replaces in's overlay with a new, empty one on its base disk.
func (s *Sandbox) freshOverlay(ctx context.Context, in *Instance) error {
	if err := os.Remove(in.Overlay()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace the overlay of VM %q: %w", in.Name, err)
	}
	return s.createOverlay(ctx, in.Base, in.Overlay())
}

// minSaveSlack is what a save leaves free on its file system beyond its own size.
const minSaveSlack = 256 << 20

// roomToSave says why a save of in into dir does not fit, "" when it does: the memory file
// is at most the guest's memory, plus the overlay when it is copied too.
func (s *Sandbox) roomToSave(in *Instance, dir string, withOverlay bool) string {
	need := int64(in.MemoryMiB)<<20 + minSaveSlack
	if withOverlay {
		if fi, err := os.Stat(in.Overlay()); err == nil {
			need += fi.Size()
		}
	}
	free, err := s.freeSpace(dir)
	if err != nil {
		return fmt.Sprintf("cannot tell the free space in %s (%v)", dir, err)
	}
	if free < need {
		return fmt.Sprintf("%s has %s free, a save needs up to %s", dir, mib(free), mib(need))
	}
	return ""
}

func mib(n int64) string { return strconv.FormatInt(n>>20, 10) + " MiB" }

// freeSpace is the space available to unprivileged users on the file system of dir.
func freeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	free := st.Bavail * uint64(st.Bsize)
	if free > math.MaxInt64 {
		return math.MaxInt64, nil
	}
	return int64(free), nil
}

// savePristine saves the freshly booted, SSH-ready guest of in as its pristine save (memory
// and a copy of its overlay) and resumes it from that save at once, which also proves the save
// works. Whatever fails, the guest ends up running: it returns the connection to use.
func (s *Sandbox) savePristine(ctx context.Context, in *Instance, key saveKey, c *sshclient.Client) *sshclient.Client {
	parent := savesDir(s.opt.Cache)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		s.opt.Status(fmt.Sprintf("not saving the booted guest for the next up: %v", err))
		return c
	}
	if why := s.roomToSave(in, parent, true); why != "" {
		s.opt.Status("not saving the booted guest for the next up: " + why)
		return c
	}
	s.opt.Status(fmt.Sprintf("saving the booted guest of %s, so that the next up restores it instead of booting", in.Name))
	c.Close()
	dn := in.DomainName()
	dir, _, err := ondisk.Entry(ctx, s.opt.Log, parent, key.hash(), func(tmp, _ string) error {
		if err := s.drv.Save(ctx, dn, filepath.Join(tmp, memoryFile)); err != nil {
			return err
		}
		if err := ondisk.CopyFile(in.Overlay(), filepath.Join(tmp, overlayFile)); err != nil {
			return fmt.Errorf("copy the overlay of the saved guest: %w", err)
		}
		data, err := json.MarshalIndent(saveMeta{Key: key, VM: in.Name, Created: time.Now().UTC()}, "", "  ")
		if err != nil {
			return err
		}
		return ondisk.WriteFileAtomic(filepath.Join(tmp, metaFile), data, 0o644)
	})
	if err != nil {
		s.opt.Status(fmt.Sprintf("saving the booted guest failed (%v); it goes on without a save", err))
	} else {
		prunePristine(s.opt.Log, parent, dir, in.Name)
	}
	if st, serr := s.drv.State(ctx, dn); serr == nil && st == vm.StateRunning {
		return s.reconnect(ctx, in) // not saved (or saved by another kmodvm): still running
	}
	if err == nil {
		c, rerr := s.restoreFrom(ctx, in, filepath.Join(dir, memoryFile))
		if rerr == nil {
			return c
		}
		s.opt.Status(fmt.Sprintf("restoring the guest just saved failed (%v); removing the save and booting cold", rerr))
		_ = ondisk.RemoveTree(dir)
	}
	// The overlay is as the save left it: a consistent, cleanly stopped disk to boot on.
	return s.coldStart(ctx, in)
}

// reconnect waits for the running guest's SSH again; nil (and a notice) when it does not
// answer.
func (s *Sandbox) reconnect(ctx context.Context, in *Instance) *sshclient.Client {
	c, err := s.waitSSH(ctx, in)
	if err != nil {
		s.opt.Status(err.Error())
		return nil
	}
	return c
}

// coldStart starts the stopped, defined domain of in and waits for SSH; nil (and a notice)
// on failure.
func (s *Sandbox) coldStart(ctx context.Context, in *Instance) *sshclient.Client {
	if err := s.drv.Start(ctx, in.DomainName()); err != nil {
		s.opt.Status(fmt.Sprintf("start VM %q: %v", in.Name, err))
		return nil
	}
	return s.reconnect(ctx, in)
}

// fixScript runs in a restored guest: its clock stood still since the save ("it has no idea
// that there was a big gap", libvirt says) and its random state is the save's, which every
// restore of that save shares. So it sets the clock from the host's time (argument), mixes
// the host's random bytes (stdin) into the kernel's pool, has the kernel reseed its generator
// from the pool at once (RNDRESEEDCRNG, Linux 4.17+; without it the reseed comes within a
// minute), and prints the clock it ended with. Its arguments: %[1]s the time, %[2]s the
// static program that does it all in the guest (images.GuestFix, on disks built since
// format 4). On an older disk one perl process does it (fixPerl; Debian's perl-base is
// essential); without perl, date and cat do all but the reseed.
const fixScript = `if [ -x %[2]s ]; then exec %[2]s %[1]s; fi; ` +
	`if command -v perl >/dev/null 2>&1; then exec perl -e '` + fixPerl + `' %[1]s; fi; ` +
	`date -u -s @%[1]s >/dev/null && cat >/dev/urandom && date -u +%%s.%%N`

// fixPerl is the program's work in one perl process, for disks without it. The syscall
// numbers (settimeofday 164, clock_gettime 228) are x86_64's, the one guest architecture
// kmodvm builds kernels for. No single quote may appear in it (the shell's quoting), and
// each % is doubled (fixScript is a format).
const fixPerl = `my ($s, $ns) = split /\./, shift; ` +
	`syscall(164, pack("l!l!", $s, int($ns / 1000)), 0) == 0 or die "settimeofday: $!\n"; ` +
	`binmode STDIN; my $seed = do { local $/; <STDIN> }; ` +
	`open(my $f, ">", "/dev/urandom") or die "/dev/urandom: $!\n"; ` +
	`syswrite($f, $seed) == length($seed) or die "write /dev/urandom: $!\n"; ` +
	`ioctl($f, 0x5207, 0) or warn "RNDRESEEDCRNG: $!\n"; ` +
	`my $ts = pack("l!l!", 0, 0); syscall(228, 0, $ts) == 0 or die "clock_gettime: $!\n"; ` +
	`printf "%%d.%%09d\n", unpack("l!l!", $ts);`

// fixCommand is fixScript for the host time now, with the guest's program at fixer.
func fixCommand(now time.Time, fixer string) string {
	return fmt.Sprintf(fixScript, fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond()), shellquote.Quote(fixer))
}

// maxClockSkew is how far off the guest's clock may be after it was set.
const maxClockSkew = time.Second

// checkClock reads the guest's "seconds.nanoseconds" answer and says whether it lies within
// maxClockSkew of the host's time between before and after the command.
func checkClock(out string, before, after time.Time) error {
	f, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		return fmt.Errorf("the guest's clock answer %q is not a time", strings.TrimSpace(out))
	}
	guest := time.Unix(0, int64(f*1e9))
	switch {
	case guest.Before(before.Add(-maxClockSkew)):
		return fmt.Errorf("the guest's clock is %s behind the host's after setting it", before.Sub(guest).Round(time.Millisecond))
	case guest.After(after.Add(maxClockSkew)):
		return fmt.Errorf("the guest's clock is %s ahead of the host's after setting it", guest.Sub(after).Round(time.Millisecond))
	}
	return nil
}

// fixRestoredGuest sets a restored guest's clock and reseeds its random state (fixScript).
// Hostname, machine-id and SSH host keys stay: a pristine save belongs to one VM, whose next
// incarnation would have the same ones after a cold boot too (they come from its disk image).
func fixRestoredGuest(ctx context.Context, c *sshclient.Client) error {
	seed := make([]byte, 512)
	if _, err := io.ReadFull(rand.Reader, seed); err != nil {
		return fmt.Errorf("read the host's random bytes: %w", err)
	}
	var out strings.Builder
	var errOut strings.Builder
	before := time.Now()
	code, err := c.Run(ctx, fixCommand(time.Now(), images.GuestFix), strings.NewReader(string(seed)), &out, &errOut)
	after := time.Now()
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("setting the guest's clock and random state exited %d: %s", code, strings.TrimSpace(errOut.String()))
	}
	return checkClock(out.String(), before, after)
}

// ownSave saves in's running guest into its state directory for the next up; false (with a
// notice saying why) when it did not, and the caller shuts the guest down instead.
func (s *Sandbox) ownSave(ctx context.Context, in *Instance) bool {
	if !s.savesUsable() {
		return false
	}
	if why := s.roomToSave(in, in.dir, false); why != "" {
		s.opt.Status("not saving the VM's state: " + why + "; shutting it down instead")
		return false
	}
	key, err := s.saveKey(ctx, in)
	if err == nil {
		_ = dropOwnSave(in)
		err = s.drv.Save(ctx, in.DomainName(), in.OwnSave())
	}
	if err == nil {
		var data []byte
		if data, err = json.MarshalIndent(saveMeta{Key: key, VM: in.Name, Created: time.Now().UTC()}, "", "  "); err == nil {
			err = ondisk.WriteFileAtomic(in.OwnSaveMeta(), data, 0o600)
		}
	}
	if err != nil {
		_ = dropOwnSave(in)
		s.opt.Status(fmt.Sprintf("could not save the VM's state (%v); shutting it down instead", err))
		return false
	}
	if fi, err := os.Stat(in.OwnSave()); err == nil {
		s.opt.Status(fmt.Sprintf("saved the state of %s (%s); the next up resumes it", in.Name, mib(fi.Size())))
	}
	return true
}

// fileSize is the size of path, 0 when it is not there.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// pristineSize is the size of a pristine save (memory and overlay), 0 when there is none.
func pristineSize(dir string) int64 {
	if dir == "" {
		return 0
	}
	return fileSize(filepath.Join(dir, memoryFile)) + fileSize(filepath.Join(dir, overlayFile))
}
