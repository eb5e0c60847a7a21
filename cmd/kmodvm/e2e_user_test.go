package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The unprivileged end-to-end test runs the daily loop as an ordinary user, as a module
// author runs it on a workstation: in the libvirt and kvm groups, with subordinate ids, no
// sudo, no sbin on PATH, no XDG_RUNTIME_DIR. scripts/ci-user.sh makes such a user (CI runs
// it); KMODVM_E2E_USER names it. Root drives the test and checks what the user cannot see.

// e2eUser returns the user the test runs kmodvm as.
func e2eUser(t *testing.T) *user.User {
	t.Helper()
	e2eEnv(t)
	name := os.Getenv("KMODVM_E2E_USER")
	if name == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI runs the unprivileged e2e test: KMODVM_E2E_USER must name the user scripts/ci-user.sh made")
		}
		t.Skip("unprivileged e2e test: run `bash scripts/ci-user.sh` and set KMODVM_E2E_USER=kmodvm-ci")
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("KMODVM_E2E_USER=%s: %v; hint: bash scripts/ci-user.sh %s", name, err, name)
	}
	return u
}

// asUser runs kmodvm as u through setpriv: the user's own groups, and the environment a
// login gives (HOME, USER, PATH without sbin), nothing of root's.
func asUser(t *testing.T, u *user.User, d time.Duration, dir string, args ...string) (int, string, string) {
	t.Helper()
	bin := kmodvmBinary(t)
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	return asUserCmd(t, u, d, dir, append([]string{bin}, args...)...)
}

func asUserCmd(t *testing.T, u *user.User, d time.Duration, dir string, argv ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	full := append([]string{"--reuid", u.Uid, "--regid", u.Gid, "--init-groups", "--reset-env", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "setpriv", full...)
	cmd.Dir = dir
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	t.Logf("as %s: %s -> exit %d (%.1f s)\nstdout:\n%s\nstderr:\n%s", u.Username, strings.Join(argv, " "), code, time.Since(start).Seconds(), out.String(), errb.String())
	if ctx.Err() != nil {
		t.Fatalf("as %s: %s did not finish within %s", u.Username, strings.Join(argv, " "), d)
	}
	return code, out.String(), errb.String()
}

func mustAsUser(t *testing.T, u *user.User, d time.Duration, dir string, args ...string) string {
	t.Helper()
	code, out, _ := asUser(t, u, d, dir, args...)
	if code != 0 {
		t.Fatalf("as %s: kmodvm %s: exit %d", u.Username, strings.Join(args, " "), code)
	}
	return out
}

// copyForUser copies src into dir/name and gives it to u.
func copyForUser(t *testing.T, u *user.User, src, dir, name string) string {
	t.Helper()
	dst := filepath.Join(dir, name)
	_ = os.RemoveAll(dst)
	if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v: %s", src, err, out)
	}
	if out, err := exec.Command("chown", "-R", u.Uid+":"+u.Gid, dst).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v: %s", dst, err, out)
	}
	return dst
}

// qemuOwner is the uid the QEMU process of domain runs as, or -1 when none runs.
func qemuOwner(t *testing.T, domain string) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-f", "guest="+domain+",").Output()
	if err != nil {
		return -1
	}
	pid := strings.Fields(string(out))[0]
	fi, err := os.Stat("/proc/" + pid)
	if err != nil {
		return -1
	}
	return int(fi.Sys().(*syscall.Stat_t).Uid)
}

// TestE2EUnprivileged: as an ordinary user, doctor -> up (toolchain root, kernel and disk
// built unprivileged; the kernel tree seeded with root's, see seedUserTree) -> run the Rust example -> the guest's files belong to root, the keys are
// private -> QEMU runs as the user -> root's kmodvm neither sees nor touches the user's VM
// -> logs, down, up, destroy; then the same user on qemu:///session, its daemon started by
// kmodvm.
func TestE2EUnprivileged(t *testing.T) {
	u := e2eUser(t)
	uid, _ := strconv.Atoi(u.Uid)
	name := fmt.Sprintf("e2e-user-%d", os.Getpid())
	domain := fmt.Sprintf("kmodvm-%d-%s", uid, name)
	n := []string{"-n", name}
	hello := copyForUser(t, u, filepath.Join(repoRoot(t), "examples/rust-hello"), u.HomeDir, "rust-hello")
	t.Cleanup(func() {
		asUser(t, u, 5*time.Minute, u.HomeDir, append(n, "destroy")...)
	})

	seedUserTree(t, u)
	code, out, _ := asUser(t, u, 2*time.Minute, u.HomeDir, "doctor")
	if code != 0 || !strings.Contains(out, "/usr/sbin/mkfs.ext4") {
		t.Fatalf("doctor as %s: exit %d; want every check passing and mkfs.ext4 found in /usr/sbin", u.Username, code)
	}

	mustAsUser(t, u, 40*time.Minute, u.HomeDir, append(n, "up")...)
	out = mustAsUser(t, u, 10*time.Minute, u.HomeDir, append(n, "run", hello)...)
	if !strings.Contains(out, "Hello from Rust!") {
		t.Errorf("run as %s: the module's log is not in the output", u.Username)
	}

	t.Run("guest files belong to root", func(t *testing.T) {
		out := mustAsUser(t, u, time.Minute, u.HomeDir, append(n, "exec", "--", "stat", "-c", "%n %u %g %a",
			"/root/.ssh", "/root/.ssh/authorized_keys", "/etc/ssh/ssh_host_ed25519_key", "/usr/bin/su", "/var/cache/apt/archives/partial")...)
		for _, want := range []string{
			"/root/.ssh 0 0 700", "/root/.ssh/authorized_keys 0 0 600", "/etc/ssh/ssh_host_ed25519_key 0 0 600",
			"/usr/bin/su 0 0 4755", // setuid kept through the tar stream
		} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("guest stat: want %q in\n%s", want, out)
			}
		}
		if !strings.Contains(out, "/var/cache/apt/archives/partial 42 ") {
			t.Errorf("guest stat: apt's partial/ should be _apt's (42):\n%s", out)
		}
		// A broken mapping leaks the user's uid or subordinate ids into the guest.
		leaked := mustAsUser(t, u, 2*time.Minute, u.HomeDir, append(n, "exec", "--", "find", "/", "-xdev",
			"(", "-uid", u.Uid, "-o", "-uid", "+65533", "-o", "-gid", "+65533", ")", "-print", "-quit")...)
		if strings.TrimSpace(leaked) != "" {
			t.Errorf("the guest has files of the host user or of subordinate ids: %s", leaked)
		}
	})

	t.Run("QEMU runs as the user, files are private", func(t *testing.T) {
		if got := qemuOwner(t, domain); got != uid {
			t.Errorf("QEMU of %s runs as uid %d, want %d", domain, got, uid)
		}
		for _, p := range []struct {
			path string
			perm os.FileMode
		}{
			{filepath.Join(u.HomeDir, ".cache/kmodvm"), 0o700},
			{filepath.Join(u.HomeDir, ".local/state/kmodvm"), 0o700},
			{filepath.Join(u.HomeDir, ".local/state/kmodvm/vms", name, "overlay.qcow2"), 0o600},
		} {
			fi, err := os.Stat(p.path)
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if fi.Mode().Perm() != p.perm || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
				t.Errorf("%s is %v of uid %d, want %v of uid %d", p.path, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Uid, p.perm, uid)
			}
		}
		keys, _ := filepath.Glob(filepath.Join(u.HomeDir, ".cache/kmodvm/images/disks/*/id_ed25519"))
		bases, _ := filepath.Glob(filepath.Join(u.HomeDir, ".cache/kmodvm/images/disks/*/base.qcow2"))
		if len(keys) == 0 || len(bases) == 0 {
			t.Fatalf("no disk key or base in the user's cache")
		}
		for _, p := range append(keys, bases...) {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v, want mode 0600", p, err)
			}
		}
	})

	t.Run("root neither sees nor touches the user's VM", func(t *testing.T) {
		ctx := context.Background()
		if _, out, _ := cli(t, ctx, "list"); strings.Contains(out, name) {
			t.Errorf("root's `kmodvm list` shows the user's VM %s", name)
		}
		cli(t, ctx, append(n, "destroy")...) // root has no VM of that name: nothing to do
		if qemuOwner(t, domain) != uid {
			t.Fatalf("root's `kmodvm destroy -n %s` stopped the user's VM", name)
		}
	})

	mustAsUser(t, u, time.Minute, u.HomeDir, append(n, "logs")...)
	mustAsUser(t, u, 2*time.Minute, u.HomeDir, append(n, "down")...)
	mustAsUser(t, u, 5*time.Minute, u.HomeDir, append(n, "up")...)
	mustAsUser(t, u, time.Minute, u.HomeDir, append(n, "exec", "--", "true")...)
	mustAsUser(t, u, 5*time.Minute, u.HomeDir, append(n, "destroy")...)
	if qemuOwner(t, domain) != -1 {
		t.Errorf("QEMU of %s still runs after destroy", domain)
	}

	t.Run("session", func(t *testing.T) {
		session := []string{"--uri", "qemu:///session", "-n", name + "-s"}
		t.Cleanup(func() {
			asUser(t, u, 5*time.Minute, u.HomeDir, append(session, "destroy")...)
			stopSessionDaemons(t, u)
		})
		stopSessionDaemons(t, u) // kmodvm must start it
		mustAsUser(t, u, 10*time.Minute, u.HomeDir, append(session, "up")...)
		out := mustAsUser(t, u, time.Minute, u.HomeDir, append(session, "exec", "--", "id", "-u")...)
		if strings.TrimSpace(out) != "0" {
			t.Errorf("exec id -u in the session guest: %q, want 0", out)
		}
		_, xml, _ := asUserCmd(t, u, time.Minute, u.HomeDir, "virsh", "-c", "qemu:///session", "dumpxml", fmt.Sprintf("kmodvm-%d-%s-s", uid, name))
		if !strings.Contains(xml, "<domain") || strings.Contains(xml, "seclabel type='static'") {
			t.Errorf("session domain XML: want a domain without a static seclabel:\n%s", xml)
		}
		mustAsUser(t, u, 5*time.Minute, u.HomeDir, append(session, "destroy")...)
	})
}

// seedUserTree gives u a copy of root's build tree of the default kernel, at the same place
// in u's cache, so the user's first kernel build compiles only what root's tree lacks of
// the default config instead of all of it (about 13 minutes here). What the user still
// does unprivileged: the toolchain root (mmdebstrap in a user namespace), the Kconfig pass
// and make in bwrap over the whole tree, modules_install, the disk. Not the unpacking of
// the sources: TestE2EInterruptRootAndFullCache unpacks them, as root. The tree is bound at
// the same path inside bwrap for every user, so root's objects are up to date for the
// user's make. Nothing is copied when root's tree is not complete or the user has one.
func seedUserTree(t *testing.T, u *user.User) {
	t.Helper()
	out := mustCLI(t, context.Background(), "kernel", "config", "--json")
	var kc struct{ Tree string }
	if err := json.Unmarshal([]byte(out), &kc); err != nil || kc.Tree == "" {
		t.Fatalf("kernel config --json: no tree (%v):\n%s", err, out)
	}
	rel, err := filepath.Rel(e2ePaths(t).Cache, kc.Tree)
	if err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("root's kernel tree %s is not in root's cache %s", kc.Tree, e2ePaths(t).Cache)
	}
	if _, err := os.Stat(filepath.Join(kc.Tree, ".kmodvm-building")); err == nil {
		t.Logf("root's tree %s has a build in progress: the user builds its kernel from scratch", kc.Tree)
		return
	}
	cache := filepath.Join(u.HomeDir, ".cache/kmodvm")
	dst := filepath.Join(cache, rel)
	if _, err := os.Stat(dst); err == nil {
		t.Logf("the user has a kernel tree %s already", dst)
		return
	}
	start := time.Now()
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// The directories down to the tree's, made as the user would have made them.
	var dirs []string
	for d := filepath.Dir(dst); d != u.HomeDir && d != "/"; d = filepath.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err == nil {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		} else if !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	for _, argv := range [][]string{{"cp", "-a", kc.Tree, dst + ".seeding"}, {"chown", "-R", u.Uid + ":" + u.Gid, dst + ".seeding"}, {"mv", dst + ".seeding", dst}} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			os.RemoveAll(dst + ".seeding")
			t.Fatalf("seed the user's kernel tree: %s: %v: %s", strings.Join(argv, " "), err, out)
		}
	}
	t.Logf("seeded %s from root's %s in %.1f s", dst, kc.Tree, time.Since(start).Seconds())
}

// stopSessionDaemons stops u's session libvirtd and virtlogd, by the pids in their pid files.
func stopSessionDaemons(t *testing.T, u *user.User) {
	t.Helper()
	for _, d := range []string{"libvirtd", "virtlogd"} {
		b, err := os.ReadFile(filepath.Join(u.HomeDir, ".cache/libvirt", d+".pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 {
			continue
		}
		if syscall.Kill(pid, syscall.SIGTERM) != nil {
			continue
		}
		for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
}
