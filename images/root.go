package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

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

// mmdebstrapArgs is the command line that builds spec's root into target.
func mmdebstrapArgs(spec Spec, target string) []string {
	spec = spec.normalized()
	args := []string{"--variant=apt"}
	if spec.SnapshotMirror {
		// A frozen snapshot's Release files expire (sid's has): apt in the root must accept them.
		args = append(args, `--aptopt=Acquire::Check-Valid-Until "false"`)
	}
	return append(args,
		"--include="+strings.Join(spec.PackageList(), ","),
		"--dpkgopt=path-exclude=/usr/share/doc/*",
		"--dpkgopt=path-exclude=/usr/share/man/*",
		"--dpkgopt=path-exclude=/usr/share/locale/*",
		spec.Suite, target, spec.Mirror,
	)
}

func buildRoot(ctx context.Context, log *slog.Logger, tmp, failedLog string, spec Spec, progress Progress) error {
	start := time.Now()
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return fmt.Errorf("mmdebstrap is not installed, and kmodvm builds its toolchain root with it; hint: apt-get install mmdebstrap")
	}
	logFile, err := os.Create(filepath.Join(tmp, logName))
	if err != nil {
		return fmt.Errorf("create build log: %w", err)
	}
	defer logFile.Close()

	target := filepath.Join(tmp, "root")
	args := mmdebstrapArgs(spec, target)
	fmt.Fprintf(logFile, "kmodvm: building toolchain root %s (format %d)\n$ mmdebstrap %s\n", spec.Hash(), FormatVersion, shellquote.Join(args...))
	progress.report("mmdebstrap: %d packages from %s %s; full log in %s", len(spec.PackageList()), spec.Suite, spec.Mirror, filepath.Join(tmp, logName))
	log.Info("building toolchain root", "suite", spec.Suite, "dir", target, "log", filepath.Join(tmp, logName))

	out := newLogWriter(logFile, tailLines, func(line string) {
		if s, ok := strings.CutPrefix(line, "I: "); ok {
			progress.report("mmdebstrap: %s", s)
		}
	})
	cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		// mmdebstrap runs as PID 1 of its own PID namespace, so when it dies (cancel, or
		// Pdeathsig when kmodvm itself is killed) apt and dpkg die with it, and in a private
		// mount namespace, so the /proc, /sys and /dev it mounts into the target vanish with
		// it: nothing keeps writing into, or stays mounted inside, the directory we remove.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS // Go also makes / private
	}
	// Without namespaces (not root), kill the whole process group.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	runErr := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // stragglers of the group, if any
	}
	if ctx.Err() != nil {
		return fmt.Errorf("image build interrupted: %w", ctx.Err())
	}
	if runErr != nil {
		return commandFailed("image build", "mmdebstrap", runErr, out.Tail(), failedLog)
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
