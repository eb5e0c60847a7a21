package images

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path"
	"slices"
	"strings"

	"github.com/kmodvm/kmodvm/images/userns"
	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// GuestPath is PATH inside the root: the host's PATH (rustup, pyenv shims) must not leak in.
const GuestPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Bind mounts a host path into the root for a command.
type Bind struct {
	Host, Guest string
	ReadOnly    bool
}

// RunOptions configure a command run inside a root.
type RunOptions struct {
	Binds          []Bind
	Dir            string   // working directory inside the root; "" is /
	Env            []string // extra KEY=VALUE on top of HOME, PATH and LANG
	Stdout, Stderr io.Writer
	// ReadOnlyRoot mounts the root read-only, so the command cannot change what other
	// builds and disks are made from. Tmpfs lists directories of the root covered first by
	// an empty tmpfs: writable, and where the mount points of Binds can be made.
	ReadOnlyRoot bool
	Tmpfs        []string
}

// Command returns a command running argv inside the root with bwrap: the root bound
// read-write at /, fresh /proc, /dev and /tmp, /sys read-only, a PID namespace, a clean
// environment. Cancelling ctx interrupts the command like Ctrl-C (see InterruptOnCancel) and
// kills bwrap if it has not exited after InterruptGrace; the PID namespace and
// --die-with-parent then take every process of the command with it. Invalid options make
// Start return an error.
func (r *Root) Command(ctx context.Context, opt RunOptions, argv ...string) *exec.Cmd {
	args, err := bwrapArgs(r.Dir, opt.ReadOnlyRoot, userns.Needed(), nil, opt, argv)
	cmd := bwrapCommand(ctx, args)
	cmd.Stdout, cmd.Stderr = opt.Stdout, opt.Stderr
	InterruptOnCancel(cmd, InterruptGrace)
	if err != nil {
		cmd.Err = fmt.Errorf("run %q in the toolchain root: %w", strings.Join(argv, " "), err)
	}
	return cmd
}

// bwrapCommand runs bwrap, found where Debian puts it whatever the PATH.
func bwrapCommand(ctx context.Context, args []string) *exec.Cmd {
	return hosttool.Command(ctx, "bwrap", args...)
}

// bwrapArgs builds bwrap's command line. extra goes after the standard mounts (internal
// use: e.g. a tmpfs /run for sshd -t). With userNS (kmodvm is not root) the command runs
// as root of a user namespace whose root is the user, who owns the root's root-owned files
// (see userns): it sees the root as the build did, files of root, `id -u` 0.
func bwrapArgs(rootDir string, readOnly, userNS bool, extra []string, opt RunOptions, argv []string) ([]string, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("no command")
	}
	if !path.IsAbs(rootDir) {
		return nil, fmt.Errorf("root directory %q is not absolute", rootDir)
	}
	bind := "--bind"
	if readOnly {
		bind = "--ro-bind"
	}
	args := []string{
		bind, rootDir, "/",
		"--proc", "/proc",
		"--dev", "/dev",
		"--ro-bind", "/sys", "/sys",
		"--tmpfs", "/tmp",
		"--unshare-pid",
		"--die-with-parent",
	}
	if userNS {
		args = append(args, "--unshare-user", "--uid", "0", "--gid", "0")
	}
	args = append(args,
		"--clearenv",
		"--setenv", "HOME", "/root",
		"--setenv", "PATH", GuestPath,
		"--setenv", "LANG", "C.UTF-8",
	)
	for _, kv := range opt.Env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("environment entry %q is not KEY=VALUE", kv)
		}
		args = append(args, "--setenv", k, v)
	}
	args = append(args, extra...)
	for _, d := range opt.Tmpfs {
		if !path.IsAbs(d) {
			return nil, fmt.Errorf("tmpfs %s: the path must be absolute", d)
		}
		args = append(args, "--tmpfs", d)
	}
	for _, b := range opt.Binds {
		if !path.IsAbs(b.Host) || !path.IsAbs(b.Guest) {
			return nil, fmt.Errorf("bind %s -> %s: both paths must be absolute", b.Host, b.Guest)
		}
		flag := "--bind"
		if b.ReadOnly {
			flag = "--ro-bind"
		}
		args = append(args, flag, b.Host, b.Guest)
	}
	dir := opt.Dir
	if dir == "" {
		dir = "/"
	}
	if !path.IsAbs(dir) {
		return nil, fmt.Errorf("working directory %q is not absolute", dir)
	}
	args = append(args, "--chdir", dir, "--")
	return append(args, argv...), nil
}

// versionTools are the tools whose versions identify a toolchain (kernel cache keys).
var versionTools = []string{"rustc", "bindgen", "clang", "ld.lld"}

// Versions returns the first line of `--version` of rustc, bindgen, clang and ld.lld in the
// root, keyed by tool name.
func (r *Root) Versions(ctx context.Context) (map[string]string, error) {
	out := make(map[string]string, len(versionTools))
	for _, tool := range versionTools {
		var stdout, stderr bytes.Buffer
		cmd := r.Command(ctx, RunOptions{Stdout: &stdout, Stderr: &stderr}, tool, "--version")
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("%s --version in %s: %w: %s", tool, r.Dir, err, strings.TrimSpace(stderr.String()+stdout.String()))
		}
		line := firstLine(stdout.String())
		if line == "" {
			line = firstLine(stderr.String())
		}
		if line == "" {
			return nil, fmt.Errorf("%s --version in %s printed nothing", tool, r.Dir)
		}
		out[tool] = line
	}
	return out, nil
}

func firstLine(s string) string {
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			return l
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
