package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/images/userns"
	"github.com/kmodvm/kmodvm/vm/hosttool"
	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/shellquote"
)

// DiskFormatVersion identifies the disk recipe (staging, guest files, mkfs options). Bump
// it whenever the recipe changes: every cached disk is then rebuilt. 3: sshd without PAM.
// 4: the static kmodvm-fix (GuestFix) for restored guests.
const DiskFormatVersion = 4

// Tree is extra content to place into the guest disk (the kernel's modules and build tree
// come this way).
type Tree struct {
	Src string // host directory
	Dst string // absolute path in the guest
}

// DiskSpec says what goes into a guest disk.
type DiskSpec struct {
	Root      *Root
	Extras    []Tree
	ExtrasKey string // identity of the extras' content, e.g. the kernel cache key
	SizeGiB   int    // 0: max(8, 2 * content)
}

// Disk is a built base disk and the keys baked into it.
type Disk struct {
	Dir       string // the cache entry
	Base      string // base.qcow2: never written once built; VMs use overlays
	ClientKey string // id_ed25519 (0600): the key authorized for root in the guest
	ClientPub string // id_ed25519.pub
	HostPub   string // ssh_host_ed25519_key.pub: the guest's host key, for pinning
	Key       string // DiskSpec.Hash()
	Log       string // build.log
}

// diskInfo is disk.json in a disk's cache entry.
type diskInfo struct {
	Format    int       `json:"format"`
	Key       string    `json:"key"`
	RootHash  string    `json:"root_hash"`
	ExtrasKey string    `json:"extras_key"`
	Extras    []string  `json:"extras"` // guest paths
	SizeGiB   int       `json:"size_gib"`
	Built     time.Time `json:"built"`
	Seconds   float64   `json:"seconds"`
}

func (s DiskSpec) validate() error {
	if s.Root == nil {
		return errors.New("disk spec has no toolchain root")
	}
	if len(s.Extras) > 0 && s.ExtrasKey == "" {
		return errors.New("disk spec has extra trees but no ExtrasKey to identify them in the cache")
	}
	for _, t := range s.Extras {
		if !filepath.IsAbs(t.Src) || !path.IsAbs(t.Dst) || path.Clean(t.Dst) == "/" {
			return fmt.Errorf("disk extra %s -> %s: both paths must be absolute, and the guest path not /", t.Src, t.Dst)
		}
	}
	if s.SizeGiB < 0 {
		return fmt.Errorf("disk size %d GiB is negative", s.SizeGiB)
	}
	return nil
}

// Hash identifies the disk: root hash, extras key and guest paths, size, DiskFormatVersion.
func (s DiskSpec) Hash() string {
	var rootHash string
	if s.Root != nil {
		rootHash = s.Root.Hash
	}
	dsts := make([]string, len(s.Extras))
	for i, t := range s.Extras {
		dsts[i] = path.Clean(t.Dst)
	}
	canonical, err := json.Marshal(struct {
		Format    int      `json:"format"`
		RootHash  string   `json:"root_hash"`
		ExtrasKey string   `json:"extras_key"`
		Extras    []string `json:"extras"`
		SizeGiB   int      `json:"size_gib"`
	}{DiskFormatVersion, rootHash, s.ExtrasKey, dsts, s.SizeGiB})
	if err != nil {
		panic(err) // strings and ints only: cannot fail
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// Files of a disk's cache entry.
const (
	baseName      = "base.qcow2"
	clientKeyName = "id_ed25519"
	hostPubName   = "ssh_host_ed25519_key.pub"
)

// diskAt is the disk of the cache entry dir, its base made private (see protectBase).
func diskAt(dir, key string) (*Disk, error) {
	d := &Disk{
		Dir: dir, Key: key, Log: filepath.Join(dir, logName),
		Base:      filepath.Join(dir, baseName),
		ClientKey: filepath.Join(dir, clientKeyName),
		ClientPub: filepath.Join(dir, clientKeyName+".pub"),
		HostPub:   filepath.Join(dir, hostPubName),
	}
	if err := protectBase(d.Base); err != nil {
		return nil, err
	}
	return d, nil
}

// diskEntry validates spec and returns the directory that holds disk entries and spec's key
// there.
func diskEntry(cacheDir string, spec DiskSpec) (disks, key string, err error) {
	if err := spec.validate(); err != nil {
		return "", "", err
	}
	if disks, err = entriesDir(cacheDir, "disks"); err != nil {
		return "", "", err
	}
	return disks, spec.Hash(), nil
}

// OpenDisk returns the cached disk for spec, or an error wrapping ErrNotBuilt.
func OpenDisk(cacheDir string, spec DiskSpec) (*Disk, error) {
	disks, key, err := diskEntry(cacheDir, spec)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(disks, key)
	if !isDir(dir) {
		return nil, remedy.With(fmt.Errorf("%w: no guest disk %s in %s", ErrNotBuilt, shortHash(key), disks), "", remedy.BuildImage)
	}
	return diskAt(dir, key)
}

// protectBase makes a base disk readable by its owner only: it holds the guest's private
// SSH host key, and whoever reads that can pose as the guest to kmodvm. QEMU runs as the
// same user (see vm.DomainSpec.QEMUUser), so it still reads it. Entries built before this
// rule are fixed when they are used.
func protectBase(base string) error {
	fi, err := os.Stat(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // the VM's start says which cached file is gone
	}
	if err != nil {
		return fmt.Errorf("guest disk %s: %w", base, err)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(base, 0o600); err != nil {
		return fmt.Errorf("make the guest disk %s readable by its owner only: %w", base, err)
	}
	return nil
}

// BuildDisk returns the cached disk for spec or builds it: cacheDir/disks/<hash>/ holds
// base.qcow2, the client key pair, the guest's public host key, disk.json and build.log.
// The root is staged with hardlinks (its files are never modified), the extras copied in,
// keys and guest files written, the stage packed into ext4 and converted to qcow2.
func BuildDisk(ctx context.Context, log *slog.Logger, cacheDir string, spec DiskSpec, progress Progress) (*Disk, error) {
	disks, key, err := diskEntry(cacheDir, spec)
	if err != nil {
		return nil, err
	}
	dir, err := cachedEntry(ctx, log, "guest disk", disks, key, func(tmp, failedLog string) error {
		return buildDisk(ctx, log, tmp, failedLog, spec, progress)
	})
	if err != nil {
		return nil, err
	}
	return diskAt(dir, key)
}

// diskBuild is one disk build in progress: its log and its steps.
type diskBuild struct {
	ctx       context.Context
	log       *slog.Logger
	logFile   io.Writer
	failedLog string
	progress  Progress
	start     time.Time
}

func (b *diskBuild) step(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(b.logFile, "kmodvm: [%5.1fs] %s\n", time.Since(b.start).Seconds(), msg)
	b.log.Debug("disk build", "step", msg)
	b.progress.report("%s", msg)
}

// run runs a host command, its output into the build log.
func (b *diskBuild) run(name string, args ...string) error {
	return b.runCmd(hosttool.Command(b.ctx, name, args...))
}

// runAsRoot runs a host command as root of the user namespace (see userns), where the
// root's files belong to the ids the guest sees: hardlinks to them can be made, and mkfs
// records those ids.
func (b *diskBuild) runAsRoot(argv ...string) error {
	return b.runCmd(userns.Command(b.ctx, argv...))
}

func (b *diskBuild) runCmd(cmd *exec.Cmd) error {
	name := filepath.Base(cmd.Args[0])
	fmt.Fprintf(b.logFile, "$ %s\n", shellquote.Join(cmd.Args...))
	out := newLogWriter(b.logFile, tailLines, nil)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if b.ctx.Err() != nil {
			return fmt.Errorf("disk build interrupted: %w", b.ctx.Err())
		}
		return commandFailed("disk build", name, err, out.Tail(), b.failedLog)
	}
	return nil
}

func buildDisk(ctx context.Context, log *slog.Logger, tmp, failedLog string, spec DiskSpec, progress Progress) error {
	start := time.Now()
	logFile, err := os.Create(filepath.Join(tmp, logName))
	if err != nil {
		return fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()
	b := &diskBuild{ctx: ctx, log: log, logFile: logFile, failedLog: failedLog, progress: progress, start: start}
	fmt.Fprintf(logFile, "kmodvm: building guest disk %s (format %d) from root %s\n", spec.Hash(), DiskFormatVersion, spec.Root.Hash)

	stage := filepath.Join(tmp, "stage")
	b.step("staging the root (hardlinks)")
	if err := b.runAsRoot("cp", "-al", "--", spec.Root.Dir, stage); err != nil {
		return err
	}
	if err := b.fillStage(stage, spec); err != nil {
		return err
	}
	b.step("compiling %s (clang, in the root)", GuestFix)
	if err := b.compileFix(stage); err != nil {
		return err
	}
	b.step("checking the sshd configuration")
	if err := b.checkSSHD(stage); err != nil {
		return err
	}

	size := spec.SizeGiB
	if size == 0 {
		content, err := contentSize(stage)
		if err != nil {
			return fmt.Errorf("measure disk content: %w", err)
		}
		size = autoSizeGiB(content)
		fmt.Fprintf(logFile, "kmodvm: content %d MiB -> %d GiB disk\n", content>>20, size)
	}
	raw := filepath.Join(tmp, "raw.img")
	b.step("packing ext4 (%d GiB, sparse)", size)
	if err := b.runAsRoot("mkfs.ext4", "-q", "-F", "-d", stage, "-E", "root_owner=0:0", "-L", "kmodvm-root", raw, fmt.Sprintf("%dG", size)); err != nil {
		return err
	}
	b.step("checking owners and modes of the guest's keys")
	if err := b.checkOwners(raw, spec.Root); err != nil {
		return err
	}
	b.step("converting to qcow2")
	if err := b.run("qemu-img", "convert", "-O", "qcow2", raw, filepath.Join(tmp, baseName)); err != nil {
		return err
	}
	if err := protectBase(filepath.Join(tmp, baseName)); err != nil {
		return err
	}
	b.step("removing the stage")
	if err := os.Remove(raw); err != nil {
		return fmt.Errorf("remove raw image: %w", err)
	}
	if err := ondisk.RemoveTree(stage); err != nil {
		return fmt.Errorf("remove disk stage: %w", err)
	}
	dsts := make([]string, len(spec.Extras))
	for i, t := range spec.Extras {
		dsts[i] = t.Dst
	}
	info := diskInfo{Format: DiskFormatVersion, Key: spec.Hash(), RootHash: spec.Root.Hash, ExtrasKey: spec.ExtrasKey,
		Extras: dsts, SizeGiB: size, Built: time.Now().UTC(), Seconds: time.Since(start).Seconds()}
	if err := writeJSON(filepath.Join(tmp, "disk.json"), info); err != nil {
		return err
	}
	fmt.Fprintf(logFile, "kmodvm: done in %.1f s\n", time.Since(start).Seconds())
	return logFile.Close()
}

// fillStage turns a staged root into the guest's filesystem: drops what the guest must not
// have, copies the extras, writes keys and guest files. The key files for the host side are
// written next to the stage (into the cache entry).
func (b *diskBuild) fillStage(stage string, spec DiskSpec) error {
	b.step("removing the kernel source tarball and the package's ssh host keys")
	for _, pattern := range []string{"/usr/src/linux-source-*.tar.*", "/etc/ssh/ssh_host_*"} {
		removed, err := removeStaged(stage, pattern)
		if err != nil {
			return err
		}
		for _, r := range removed {
			fmt.Fprintf(b.logFile, "kmodvm: removed %s\n", r)
		}
	}
	for _, t := range spec.Extras {
		b.step("copying %s", t.Dst)
		dst, err := mkdirStaged(stage, t.Dst, 0o755)
		if err != nil {
			return err
		}
		// A file already there is a hardlink shared with the root: CopyTree replaces it
		// (rename over it), never writes into it.
		if _, err := ondisk.CopyTree(b.ctx, t.Src, dst, ondisk.CopyOptions{}); err != nil {
			return fmt.Errorf("copy %s into the disk: %w", t.Dst, err)
		}
	}
	b.step("generating ssh keys")
	client, err := newKeyPair("kmodvm-client")
	if err != nil {
		return err
	}
	host, err := newKeyPair("root@" + Hostname)
	if err != nil {
		return err
	}
	entry := filepath.Dir(stage)
	if err := writeKeyFiles(entry, client, host); err != nil {
		return err
	}
	b.step("writing guest configuration (%s init)", spec.Root.Spec.normalized().Init)
	return writeGuest(stage, spec.Root.Spec.normalized().Init, client, host)
}

// GuestFix sets a restored guest's clock and random state (guestfix/kmodvm-fix.c; the sandbox runs
// it after each restore from a save).
const GuestFix = "/usr/local/sbin/kmodvm-fix"

//go:embed guestfix/kmodvm-fix.c
var fixSource []byte

// compileFix compiles GuestFix, statically, with the root's clang and C library (the stage
// is the root, read-only here), in a directory beside the stage, and writes it into the
// stage.
func (b *diskBuild) compileFix(stage string) error {
	dir, err := os.MkdirTemp(filepath.Dir(stage), "fix-")
	if err != nil {
		return fmt.Errorf("compile %s: %w", GuestFix, err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "kmodvm-fix.c"), fixSource, 0o644); err != nil {
		return fmt.Errorf("compile %s: %w", GuestFix, err)
	}
	const work = "/tmp/kmodvm-fix"
	args, err := bwrapArgs(stage, true, userns.Needed(), nil, RunOptions{Binds: []Bind{{Host: dir, Guest: work}}, Dir: work},
		[]string{"clang", "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", "kmodvm-fix", "kmodvm-fix.c"})
	if err != nil {
		return err
	}
	if err := b.runCmd(bwrapCommand(b.ctx, args)); err != nil {
		return err
	}
	bin, err := os.ReadFile(filepath.Join(dir, "kmodvm-fix"))
	if err != nil {
		return fmt.Errorf("compile %s: %w", GuestFix, err)
	}
	return writeStaged(stage, GuestFix, bin, 0o755)
}

// writeKeyFiles writes the host side's files into the cache entry: the client key pair and
// the guest's public host key.
func writeKeyFiles(entry string, client, host keyPair) error {
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{clientKeyName, client.Private, 0o600},
		{clientKeyName + ".pub", client.Public, 0o644},
		{hostPubName, host.Public, 0o644},
	}
	for _, f := range files {
		p := filepath.Join(entry, f.name)
		if err := os.WriteFile(p, f.data, f.perm); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
		if err := os.Chmod(p, f.perm); err != nil {
			return fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return nil
}

// writeGuest writes the keys, sshd configuration, init and helper scripts into the stage.
func writeGuest(stage, init string, client, host keyPair) error {
	if _, err := mkdirStaged(stage, "/root/.ssh", 0o700); err != nil {
		return err
	}
	if err := writeStaged(stage, "/root/.ssh/authorized_keys", client.Public, 0o600); err != nil {
		return err
	}
	if err := writeStaged(stage, "/etc/ssh/ssh_host_ed25519_key", host.Private, 0o600); err != nil {
		return err
	}
	if err := writeStaged(stage, "/etc/ssh/ssh_host_ed25519_key.pub", host.Public, 0o644); err != nil {
		return err
	}
	for _, f := range guestFiles(init) {
		if err := writeStaged(stage, f.Path, []byte(f.Data), fs.FileMode(f.Mode)); err != nil {
			return err
		}
	}
	links := guestLinks(init)
	for _, p := range sortedKeys(links) {
		if err := symlinkStaged(stage, p, links[p]); err != nil {
			return err
		}
	}
	return nil
}

// checkSSHD runs `sshd -t` in the stage: an option the guest's OpenSSH does not know would
// otherwise only show as a guest that never answers.
func (b *diskBuild) checkSSHD(stage string) error {
	var out bytes.Buffer
	args, err := bwrapArgs(stage, true, userns.Needed(), []string{"--tmpfs", "/run", "--dir", "/run/sshd"},
		RunOptions{}, []string{"/usr/sbin/sshd", "-t"})
	if err != nil {
		return err
	}
	cmd := bwrapCommand(b.ctx, args)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if b.ctx.Err() != nil {
			return fmt.Errorf("disk build interrupted: %w", b.ctx.Err())
		}
		fmt.Fprintf(b.logFile, "%s", out.String())
		return fmt.Errorf("disk build failed: the guest's sshd rejects its configuration (sshd -t: %v):\n%s\nhint: full log in %s",
			err, strings.TrimSpace(out.String()), b.failedLog)
	}
	return nil
}

// CreateOverlay creates overlay as a qcow2 image backed by base (by its absolute path). It
// never overwrites an existing file.
func CreateOverlay(ctx context.Context, base, overlay string) error {
	absBase, err := filepath.Abs(base)
	if err != nil {
		return fmt.Errorf("create overlay: %w", err)
	}
	if _, err := os.Stat(absBase); err != nil {
		return fmt.Errorf("create overlay %s: base disk: %w", overlay, err)
	}
	if _, err := os.Lstat(overlay); err == nil {
		return remedy.With(fmt.Errorf("create overlay %s: the file already exists", overlay), "", remedy.RemoveVM)
	}
	// Create under a temporary name, then link into place: link(2) fails if the overlay
	// appeared meanwhile, so an existing overlay is never replaced.
	tmp := fmt.Sprintf("%s.tmp-%d", overlay, os.Getpid())
	defer os.Remove(tmp)
	var out bytes.Buffer
	cmd := hosttool.Command(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", absBase, tmp)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("create overlay %s: qemu-img: %v: %s", overlay, err, strings.TrimSpace(out.String()))
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fmt.Errorf("create overlay %s: %w", overlay, err)
	}
	if err := os.Link(tmp, overlay); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return remedy.With(fmt.Errorf("create overlay %s: the file already exists", overlay), "", remedy.RemoveVM)
		}
		return fmt.Errorf("create overlay %s: %w", overlay, err)
	}
	return nil
}
