// Package hosttool finds the host programs kmodvm runs (mkfs.ext4, libvirtd, newuidmap…)
// where Debian installs them, whatever the caller's PATH: an ordinary user's PATH on
// Debian holds no sbin directory, yet /usr/sbin/mkfs.ext4 runs fine without root.
package hosttool

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// SbinDirs are searched after PATH, in this order. A variable so tests can point it at a
// directory of fakes.
var SbinDirs = []string{"/usr/local/sbin", "/usr/sbin", "/sbin"}

// packages names the Debian package that installs each tool kmodvm runs.
var packages = map[string]string{
	"bwrap":              "bubblewrap",
	"debugfs":            "e2fsprogs",
	"libvirtd":           "libvirt-daemon",
	"mkfs.ext4":          "e2fsprogs",
	"mmdebstrap":         "mmdebstrap",
	"newgidmap":          "uidmap",
	"newuidmap":          "uidmap",
	"qemu-img":           "qemu-utils",
	"qemu-system-x86_64": "qemu-system-x86",
	"tar":                "tar",
	"unshare":            "util-linux",
	"virtlogd":           "libvirt-daemon",
	"virtqemud":          "libvirt-daemon",
}

// Package is the Debian package that installs tool, or "" if kmodvm does not know it.
func Package(tool string) string { return packages[tool] }

// Find returns the path of tool: from PATH first, then from SbinDirs. The error says which
// package installs it.
func Find(tool string) (string, error) {
	if p, err := exec.LookPath(tool); err == nil {
		return p, nil
	}
	for _, dir := range SbinDirs {
		p := filepath.Join(dir, tool)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", NotFound(tool)
}

// ErrNotFound is wrapped by the errors of Find.
var ErrNotFound = errors.New("not found")

// NotFound is the error for a tool that is not installed: which package has it.
func NotFound(tool string) error {
	hint := "install it"
	if pkg := Package(tool); pkg != "" {
		hint = "sudo apt-get install " + pkg + " (or `sudo bash scripts/deps.sh`)"
	}
	return fmt.Errorf("%s: %w in PATH or in %s; hint: %s", tool, ErrNotFound, strings.Join(SbinDirs, ", "), hint)
}

// Env returns env (os.Environ() when nil) with PATH extended by the SbinDirs it lacks:
// tools kmodvm starts start others in turn (mmdebstrap runs ldconfig and start-stop-daemon
// through dpkg), and they must find them too.
func Env(env []string) []string {
	if env == nil {
		env = os.Environ()
	}
	out := make([]string, 0, len(env)+1)
	path := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
			continue
		}
		out = append(out, kv)
	}
	return append(out, "PATH="+ExtendPath(path))
}

// ExtendPath appends to path the SbinDirs it does not hold.
func ExtendPath(path string) string {
	var dirs []string
	if path != "" {
		dirs = filepath.SplitList(path)
	}
	for _, d := range SbinDirs {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	return strings.Join(dirs, string(filepath.ListSeparator))
}

// Command is exec.CommandContext for tool found with Find; when it is not installed, the
// command's Start returns Find's error (which names the package).
func Command(ctx context.Context, tool string, args ...string) *exec.Cmd {
	path, err := Find(tool)
	if err != nil {
		cmd := exec.CommandContext(ctx, os.DevNull, args...)
		cmd.Args[0] = tool
		cmd.Err = err
		return cmd
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Args[0] = tool
	return cmd
}
