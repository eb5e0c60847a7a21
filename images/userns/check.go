package userns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// MinSubids is how many subordinate ids `unshare --map-auto` maps: ids 1..65535 of the
// namespace, which a Debian root with its system users needs.
const MinSubids = 65536

// ParseSubids reads /etc/subuid or /etc/subgid (lines name_or_uid:start:count) and returns
// the block of user (by name or by uid) to use: the first with count >= MinSubids, else the
// largest, so that the caller can say it is too small. ok is false when user has no block.
// Comments, blank and malformed lines are skipped.
func ParseSubids(r io.Reader, user string, uid int) (start, count int, ok bool) {
	for _, b := range parseBlocks(r) {
		if b.owner != user && b.owner != strconv.Itoa(uid) {
			continue
		}
		if b.count >= MinSubids {
			return b.start, b.count, true
		}
		if !ok || b.count > count {
			start, count, ok = b.start, b.count, true
		}
	}
	return start, count, ok
}

// subidBlock is one line of /etc/subuid or /etc/subgid.
type subidBlock struct {
	owner        string
	start, count int
}

// maxSubid bounds ids: they are 32-bit on Linux.
const maxSubid = 1<<32 - 1

func parseBlocks(r io.Reader) []subidBlock {
	var out []subidBlock
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || f[0] == "" {
			continue
		}
		start, err1 := strconv.Atoi(f[1])
		count, err2 := strconv.Atoi(f[2])
		if err1 != nil || err2 != nil || start < 0 || count <= 0 || start > maxSubid || count > maxSubid-start+1 {
			continue
		}
		out = append(out, subidBlock{f[0], start, count})
	}
	return out
}

// FreeRange is the first range of MinSubids ids from 100000 on (Debian's SUB_UID_MIN), in
// steps of MinSubids, that overlaps no block of any user in files (the contents of
// /etc/subuid and /etc/subgid), so one range serves for both.
func FreeRange(files ...[]byte) (first, last int) {
	var blocks []subidBlock
	for _, f := range files {
		blocks = append(blocks, parseBlocks(bytes.NewReader(f))...)
	}
	for start := 100000; ; start += MinSubids {
		end := start + MinSubids // exclusive
		free := true
		for _, b := range blocks {
			if b.start < end && start < b.start+b.count {
				free = false
				break
			}
		}
		if free {
			return start, end - 1
		}
	}
}

// Problem is one reason an ordinary user cannot build images in a user namespace, with the
// command that fixes it.
type Problem struct{ What, Fix string }

// ToolStat is what Check needs to know about newuidmap and newgidmap.
type ToolStat struct {
	Mode fs.FileMode // with fs.ModeSetuid
	UID  int         // owner
	Caps bool        // has file capabilities (security.capability), as on Fedora
}

// Env is the host as Check sees it; DefaultEnv is the real one.
type Env struct {
	UID      int
	User     string
	ReadFile func(path string) ([]byte, error)
	Find     func(tool string) (string, error) // hosttool.Find
	Stat     func(path string) (ToolStat, error)
	// Probe runs `unshare --map-root-user --map-auto true` and returns its stderr on failure.
	Probe func() (stderr string, err error)
}

// DefaultEnv is this process on this host.
func DefaultEnv() Env {
	name := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return Env{
		UID:      os.Getuid(),
		User:     name,
		ReadFile: os.ReadFile,
		Find:     hosttool.Find,
		Stat:     statTool,
		Probe:    probe,
	}
}

func statTool(path string) (ToolStat, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return ToolStat{}, err
	}
	ts := ToolStat{Mode: fi.Mode(), UID: -1}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ts.UID = int(st.Uid)
	}
	n, err := syscall.Getxattr(path, "security.capability", nil)
	ts.Caps = err == nil && n > 0
	return ts, nil
}

// probeTimeout bounds the live probe: creating a namespace takes milliseconds.
const probeTimeout = 10 * time.Second

func probe() (string, error) {
	unshare, err := hosttool.Find("unshare")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, unshare, "--map-root-user", "--map-auto", "true")
	cmd.Stderr = &stderr
	cmd.Env = hosttool.Env(nil)
	err = cmd.Run()
	return strings.TrimSpace(stderr.String()), err
}

// Check lists what stops env's user from running commands as root of a user namespace
// (see Command), each with its fix. As root it returns nothing: root needs no namespace.
// The live probe runs only when nothing else is wrong: it would fail for the same reasons.
func Check(env Env) []Problem {
	if env.UID == 0 {
		return nil
	}
	var out []Problem
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		out = append(out, checkMapTool(env, tool)...)
	}
	out = append(out, checkSubids(env)...)
	out = append(out, checkSysctls(env)...)
	if len(out) > 0 {
		return out
	}
	if stderr, err := env.Probe(); err != nil {
		if errors.Is(err, hosttool.ErrNotFound) {
			return []Problem{{What: err.Error(), Fix: "sudo apt-get install util-linux"}}
		}
		what := "`unshare --map-root-user --map-auto true` failed: " + err.Error()
		if stderr != "" {
			what += ": " + stderr
		}
		return []Problem{{What: what, Fix: "unshare needs util-linux >= 2.38 for --map-auto; check the messages above and `dmesg` for a security module denying user namespaces"}}
	}
	return nil
}

func checkMapTool(env Env, tool string) []Problem {
	path, err := env.Find(tool)
	if err != nil {
		return []Problem{{What: tool + " is not installed: it maps the subordinate ids into the namespace", Fix: "sudo apt-get install uidmap"}}
	}
	st, err := env.Stat(path)
	if err != nil {
		return []Problem{{What: fmt.Sprintf("cannot stat %s: %v", path, err), Fix: "sudo apt-get install --reinstall uidmap"}}
	}
	if st.Caps || (st.Mode&fs.ModeSetuid != 0 && st.UID == 0) {
		return nil
	}
	return []Problem{{
		What: fmt.Sprintf("%s is not setuid root (mode %s, owner uid %d): it cannot map subordinate ids", path, st.Mode, st.UID),
		Fix:  fmt.Sprintf("sudo chown root:root %s && sudo chmod u+s %s", path, path),
	}}
}

func checkSubids(env Env) []Problem {
	uids, _ := env.ReadFile("/etc/subuid")
	gids, _ := env.ReadFile("/etc/subgid")
	var short []string
	var flags []string
	for _, f := range []struct {
		path, flag string
		data       []byte
	}{{"/etc/subuid", "--add-subuids", uids}, {"/etc/subgid", "--add-subgids", gids}} {
		start, count, ok := ParseSubids(bytes.NewReader(f.data), env.User, env.UID)
		switch {
		case !ok:
			short = append(short, fmt.Sprintf("%s has no block for %s", f.path, env.User))
		case count < MinSubids:
			short = append(short, fmt.Sprintf("%s gives %s only %d ids (from %d)", f.path, env.User, count, start))
		default:
			continue
		}
		flags = append(flags, f.flag)
	}
	if len(short) == 0 {
		return nil
	}
	first, last := FreeRange(uids, gids)
	fix := "sudo usermod"
	for _, fl := range flags {
		fix += fmt.Sprintf(" %s %d-%d", fl, first, last)
	}
	return []Problem{{
		What: strings.Join(short, "; ") + fmt.Sprintf(": unshare --map-auto needs %d subordinate ids", MinSubids),
		Fix:  fix + " " + env.User,
	}}
}

func checkSysctls(env Env) []Problem {
	var out []Problem
	read := func(path string) string {
		data, err := env.ReadFile(path)
		if err != nil {
			return "" // not this kernel's knob
		}
		return strings.TrimSpace(string(data))
	}
	if read("/proc/sys/kernel/unprivileged_userns_clone") == "0" {
		out = append(out, Problem{
			What: "kernel.unprivileged_userns_clone is 0: this kernel (Debian < 11) lets only root create user namespaces",
			Fix:  "sudo sysctl -w kernel.unprivileged_userns_clone=1 (keep it: echo kernel.unprivileged_userns_clone=1 | sudo tee /etc/sysctl.d/90-userns.conf)",
		})
	}
	if read("/proc/sys/user/max_user_namespaces") == "0" {
		out = append(out, Problem{
			What: "user.max_user_namespaces is 0: no user namespaces may be created",
			Fix:  "sudo sysctl -w user.max_user_namespaces=15000 (keep it: echo user.max_user_namespaces=15000 | sudo tee /etc/sysctl.d/90-userns.conf)",
		})
	}
	if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1" {
		out = append(out, Problem{
			What: "kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 24.04+): AppArmor denies unconfined programs (unshare, mmdebstrap) the namespace's root",
			Fix:  "an AppArmor profile with `userns,` for /usr/bin/unshare and /usr/bin/mmdebstrap, or sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
		})
	}
	return out
}
