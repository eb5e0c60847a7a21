package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
	"github.com/kmodvm/kmodvm/images/userns"
	"github.com/kmodvm/kmodvm/vm/hosttool"
	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/shellquote"
)

// ErrNotBuilt is returned (wrapped) by OpenRoot and OpenDisk when the cache has no entry.
var ErrNotBuilt = errors.New("image not built")

// Root is a built toolchain root directory.
type Root struct {
	Dir  string // the root filesystem
	Hash string // Spec.Hash()
	Spec Spec   // normalized: defaults filled in, Packages is the full sorted list
	Log  string // mmdebstrap's output
}

// rootInfo is spec.json in a root's cache entry.
type rootInfo struct {
	Format   int               `json:"format"`
	Hash     string            `json:"hash"`
	Spec     Spec              `json:"spec"`
	Built    time.Time         `json:"built"`
	Seconds  float64           `json:"seconds"`
	Versions map[string]string `json:"versions"`
}

const tailLines = 15

// BuildRoot returns the cached root for spec, or builds it with mmdebstrap:
// cacheDir/roots/<hash>/ holds root/, spec.json and build.log. A second call with the same
// spec returns at once.
func BuildRoot(ctx context.Context, log *slog.Logger, cacheDir string, spec Spec, progress Progress) (*Root, error) {
	spec, roots, hash, err := rootEntry(cacheDir, spec)
	if err != nil {
		return nil, err
	}
	dir, err := cachedEntry(ctx, log, "toolchain root", roots, hash, func(tmp, failedLog string) error {
		return buildRoot(ctx, log, tmp, failedLog, spec, progress)
	})
	if err != nil {
		return nil, err
	}
	return rootAt(dir, hash, spec), nil
}

// rootEntry validates spec and returns it normalized, with the directory that holds root
// entries and spec's key there.
func rootEntry(cacheDir string, spec Spec) (norm Spec, roots, hash string, err error) {
	if err := spec.Validate(); err != nil {
		return Spec{}, "", "", err
	}
	if roots, err = entriesDir(cacheDir, "roots"); err != nil {
		return Spec{}, "", "", err
	}
	norm = spec.normalized()
	return norm, roots, norm.Hash(), nil
}

// OpenRoot returns the cached root for spec, or an error wrapping ErrNotBuilt.
func OpenRoot(cacheDir string, spec Spec) (*Root, error) {
	spec, roots, hash, err := rootEntry(cacheDir, spec)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(roots, hash)
	if !isDir(filepath.Join(dir, "root")) {
		return nil, remedy.With(fmt.Errorf("%w: no toolchain root for suite %s (spec %s) in %s",
			ErrNotBuilt, spec.Suite, shortHash(hash), roots), "", remedy.BuildImage)
	}
	return rootAt(dir, hash, spec), nil
}

func rootAt(dir, hash string, spec Spec) *Root {
	return &Root{Dir: filepath.Join(dir, "root"), Hash: hash, Spec: spec, Log: filepath.Join(dir, logName)}
}

// mmdebstrapArgs is the command line that builds spec's root as a tar stream on stdout.
// Unshare mode builds it in a user namespace, as root or not; the stream holds the true
// owners and modes ("bit-by-bit identical to a tarball created with the root mode",
// mmdebstrap(1)), which a directory built by an ordinary user could not keep.
func mmdebstrapArgs(spec Spec) []string {
	spec = spec.normalized()
	args := []string{"--mode=unshare", "--variant=apt", "--format=tar"}
	if spec.SnapshotMirror {
		// A frozen snapshot's Release files expire (sid's has): apt in the root must accept them.
		args = append(args, `--aptopt=Acquire::Check-Valid-Until "false"`)
	}
	return append(args,
		"--include="+strings.Join(spec.PackageList(), ","),
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		spec.Suite, "-", spec.Mirror,
	)
}

// tarArgs unpacks the stream into target with the owners it records. Device nodes are left
// out: an ordinary user cannot make them, and nothing needs them (bwrap brings its own /dev,
// the guest mounts devtmpfs). Run through userns, so an ordinary user's copy belongs to them
// (root's files) and to their subordinate ids (the system users').
func tarArgs(target string) []string {
	return []string{"tar", "--numeric-owner", "-xpf", "-", "-C", target, "--exclude=./dev/*"}
}

// mmdebstrapTmpDir is where mmdebstrap builds before it streams: on disk (not a tmpfs /tmp:
// 2 GB), and, as unshare mode wants it, writable by every id of the namespace.
var mmdebstrapTmpDir = "/var/tmp"

func buildRoot(ctx context.Context, log *slog.Logger, tmp, failedLog string, spec Spec, progress Progress) error {
	start := time.Now()
	mmdebstrap, err := hosttool.Find("mmdebstrap")
	if err != nil {
		return fmt.Errorf("kmodvm builds its toolchain root with mmdebstrap: %w", err)
	}
	if problems := userns.Check(userns.DefaultEnv()); len(problems) > 0 {
		return fmt.Errorf("kmodvm builds the toolchain root in a user namespace, and this machine cannot make one for %s: %s; hint: %s (`kmodvm doctor` checks it all)",
			currentUser(), problems[0].What, problems[0].Fix)
	}
	logFile, err := os.Create(filepath.Join(tmp, logName))
	if err != nil {
		return fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()

	target := filepath.Join(tmp, "root")
	if err := os.Mkdir(target, 0o755); err != nil {
		return fmt.Errorf("create root directory: %w", err)
	}
	mmTmp, err := os.MkdirTemp(mmdebstrapTmpDir, "kmodvm-mm-*")
	if err != nil {
		return fmt.Errorf("create mmdebstrap's temporary directory: %w; hint: %s must exist and be writable", err, mmdebstrapTmpDir)
	}
	defer func() {
		if err := ondisk.RemoveTree(mmTmp); err != nil {
			log.Warn("mmdebstrap's temporary directory stays", "dir", mmTmp, "err", err)
		}
	}()
	if err := os.Chmod(mmTmp, 0o1777); err != nil { // mmdebstrap(1): TMPDIR must be world-writable
		return fmt.Errorf("create mmdebstrap's temporary directory: %w", err)
	}

	args := mmdebstrapArgs(spec)
	untar := tarArgs(target)
	fmt.Fprintf(logFile, "kmodvm: building toolchain root %s (format %d)\n$ TMPDIR=%s mmdebstrap %s | %s\n",
		spec.Hash(), FormatVersion, mmTmp, shellquote.Join(args...), shellquote.Join(userns.Argv(os.Geteuid(), untar)...))
	progress.report("mmdebstrap: %d packages from %s %s; full log in %s", len(spec.PackageList()), spec.Suite, spec.Mirror, filepath.Join(tmp, logName))
	log.Info("building toolchain root", "suite", spec.Suite, "dir", target, "log", filepath.Join(tmp, logName))

	out := newLogWriter(logFile, tailLines, func(line string) {
		if s, ok := strings.CutPrefix(line, "I: "); ok {
			progress.report("mmdebstrap: %s", s)
		}
	})
	cmd := exec.CommandContext(ctx, mmdebstrap, args...)
	cmd.Env = append(hosttool.Env(nil), "TMPDIR="+mmTmp)
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		// mmdebstrap runs as PID 1 of its own PID namespace, so when it dies (cancel, or
		// Pdeathsig when kmodvm itself is killed) apt and dpkg die with it, and in a private
		// mount namespace, so the /proc, /sys and /dev it mounts vanish with it.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS // Go also makes / private
	}
	// Without namespaces of our own (not root), kill the whole process group.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second

	tarOut := newLogWriter(logFile, tailLines, nil)
	unpack := userns.Command(ctx, untar...)
	unpack.Stdout, unpack.Stderr = tarOut, tarOut
	mmErr, tarErr := runPipe(cmd, unpack)
	if ctx.Err() != nil {
		return fmt.Errorf("image build interrupted: %w", ctx.Err())
	}
	switch culprit(mmErr, tarErr, tarOut.Tail()) {
	case "mmdebstrap":
		return commandFailed("image build", "mmdebstrap", mmErr, out.Tail(), failedLog)
	case "tar":
		return commandFailed("image build", "tar (unpacking mmdebstrap's stream)", tarErr, tarOut.Tail(), failedLog)
	}

	progress.report("checking the toolchain in the new root")
	root := &Root{Dir: target, Hash: spec.Hash(), Spec: spec}
	versions, err := root.Versions(ctx)
	if err != nil {
		fmt.Fprintf(logFile, "kmodvm: toolchain check failed: %v\n", err)
		return fmt.Errorf("image build failed: the new root's toolchain does not run: %w; hint: full log in %s", err, failedLog)
	}
	for _, k := range sortedKeys(versions) {
		fmt.Fprintf(logFile, "kmodvm: %s: %s\n", k, versions[k])
	}
	info := rootInfo{Format: FormatVersion, Hash: spec.Hash(), Spec: spec, Built: time.Now().UTC(),
		Seconds: time.Since(start).Seconds(), Versions: versions}
	if err := writeJSON(filepath.Join(tmp, "spec.json"), info); err != nil {
		return err
	}
	return logFile.Close()
}

// runPipe runs producer | consumer and returns each one's error. When one fails the other
// is stopped (the pipe closes, or the group is killed), so neither waits forever; a consumer
// killed that way has no error of its own (consErr nil): the producer's is the story. A
// consumer that failed on its own is the root cause when both fail (the producer then dies
// on the closed pipe).
func runPipe(producer, consumer *exec.Cmd) (prodErr, consErr error) {
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("make a pipe: %w", err), nil
	}
	producer.Stdout, consumer.Stdin = w, r
	if err := consumer.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	r.Close()
	if err := producer.Start(); err != nil {
		w.Close()
		_ = syscall.Kill(-consumer.Process.Pid, syscall.SIGKILL)
		_ = consumer.Wait()
		return err, nil
	}
	w.Close()
	prodErr = producer.Wait()
	_ = syscall.Kill(-producer.Process.Pid, syscall.SIGKILL) // stragglers of the group, if any
	if prodErr != nil {
		// A half stream must not sit in a tar that waits for more.
		_ = syscall.Kill(-consumer.Process.Pid, syscall.SIGKILL)
	}
	consErr = consumer.Wait()
	if ws, ok := consumer.ProcessState.Sys().(syscall.WaitStatus); ok && prodErr != nil && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		consErr = nil
	}
	return prodErr, consErr
}

// currentUser names the invoking user for messages.
func currentUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprintf("uid %d", os.Getuid())
}

// culprit says which side of the mmdebstrap | tar pipe to blame: "" when both succeeded.
// When both failed, one failure caused the other. mmdebstrap failing (a package apt cannot
// find) leaves tar a stream that is no tar archive, and tar says so about its input; tar
// failing on its own (a full disk: "Cannot write") kills mmdebstrap with SIGPIPE. Blaming
// tar for a bad stream would hide the missing package.
func culprit(mmErr, tarErr error, tarTail string) string {
	badStream := strings.Contains(tarTail, "does not look like a tar archive") ||
		strings.Contains(tarTail, "Unexpected EOF in archive")
	switch {
	case tarErr != nil && (mmErr == nil || !badStream):
		return "tar"
	case mmErr != nil:
		return "mmdebstrap"
	}
	return ""
}

// commandFailed is the error for a failed build step: what failed, the last lines of its
// output, and where the full log is.
func commandFailed(what, name string, err error, tail, logPath string) error {
	how := fmt.Sprintf("%s: %v", name, err)
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() >= 0 {
		how = fmt.Sprintf("%s exited %d", name, exit.ExitCode())
	}
	return fmt.Errorf("%s failed (%s); last lines:\n%s\nhint: full log in %s", what, how, tail, logPath)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}
