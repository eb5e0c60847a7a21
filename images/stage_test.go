package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"
)

// fakeRoot makes a small root like mmdebstrap's: merged-/usr symlinks, ssh host keys, a
// kernel source tarball, and an absolute symlink that would escape if followed on the host.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	files := map[string]string{
		"etc/hostname":                    "builder\n",
		"etc/ssh/sshd_config":             "Include /etc/ssh/sshd_config.d/*.conf\n",
		"etc/ssh/ssh_host_rsa_key":        "rsa private\n",
		"etc/ssh/ssh_host_rsa_key.pub":    "rsa public\n",
		"etc/ssh/ssh_host_ed25519_key":    "ed private\n",
		"etc/ssh/moduli":                  "moduli\n",
		"usr/src/linux-source-7.2.tar.xz": "tarball",
		"usr/src/kdir/Makefile":           "old makefile\n",
		"usr/sbin/sshd":                   "#!/bin/sh\n",
		"usr/lib/os-release":              "ID=debian\n",
	}
	for p, data := range files {
		writeFile(t, filepath.Join(root, p), data, 0o644)
	}
	for _, d := range []string{"etc/ssh/sshd_config.d", "root", "usr/local/sbin", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{"sbin": "usr/sbin", "lib": "usr/lib", "escape": "/etc"} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func writeFile(t *testing.T, p, data string, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), perm); err != nil {
		t.Fatal(err)
	}
}

// snapshot records every entry of a tree: type, mode and content or link target.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			snap[rel] = "link " + target
		case fi.IsDir():
			snap[rel] = fmt.Sprintf("dir %v", fi.Mode())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			snap[rel] = fmt.Sprintf("file %v %x", fi.Mode(), sha256.Sum256(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// stageOf hardlinks root into a stage next to it, like BuildDisk.
func stageOf(t *testing.T, root string) string {
	t.Helper()
	stage := filepath.Join(filepath.Dir(root), "stage")
	if out, err := exec.Command("cp", "-al", "--", root, stage).CombinedOutput(); err != nil {
		t.Fatalf("cp -al: %v: %s", err, out)
	}
	return stage
}

func TestResolveIn(t *testing.T) {
	root := fakeRoot(t)
	tests := []struct{ guest, want string }{
		{"/etc/hostname", "etc/hostname"},
		{"/sbin/kmodvm-init", "usr/sbin/kmodvm-init"},
		{"/lib/modules/7.2.0", "usr/lib/modules/7.2.0"},
		{"/escape/passwd", "etc/passwd"},       // absolute symlink: stays inside
		{"/../../../etc/shadow", "etc/shadow"}, // .. stops at the root
		{"/sbin/../etc", "usr/etc"},            // .. after a symlink, like the kernel
		{"/missing/dir/file", "missing/dir/file"},
		{"/", ""},
	}
	for _, tt := range tests {
		got, err := resolveIn(root, tt.guest)
		if err != nil {
			t.Errorf("resolveIn(%s): %v", tt.guest, err)
			continue
		}
		if want := filepath.Join(root, tt.want); got != want {
			t.Errorf("resolveIn(%s) = %s, want %s", tt.guest, got, want)
		}
	}
	if _, err := resolveIn(root, "relative"); err == nil {
		t.Errorf("relative path accepted")
	}
	if err := os.Symlink("loop", filepath.Join(root, "loop")); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveIn(root, "/loop/x"); err == nil || !strings.Contains(err.Error(), "symbolic links") {
		t.Errorf("symlink loop: %v", err)
	}
}

func TestWriteStagedNeverModifiesRoot(t *testing.T) {
	root := fakeRoot(t)
	stage := stageOf(t, root)
	before := snapshot(t, root)

	// The stage's file is a hardlink of the root's before the write...
	var rootSt, stageSt syscall.Stat_t
	if err := syscall.Stat(filepath.Join(root, "etc/hostname"), &rootSt); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Join(stage, "etc/hostname"), &stageSt); err != nil {
		t.Fatal(err)
	}
	if rootSt.Ino != stageSt.Ino {
		t.Fatalf("test setup: stage is not hardlinked")
	}
	if err := writeStaged(stage, "/etc/hostname", []byte("kmodvm\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeStaged(stage, "/escape/new-file", []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := symlinkStaged(stage, "/sbin/sshd", "/bin/true"); err != nil {
		t.Fatal(err)
	}
	// ...and a separate file after it.
	if err := syscall.Stat(filepath.Join(stage, "etc/hostname"), &stageSt); err != nil {
		t.Fatal(err)
	}
	if rootSt.Ino == stageSt.Ino {
		t.Errorf("staged file still shares the root's inode")
	}
	if b, _ := os.ReadFile(filepath.Join(stage, "etc/hostname")); string(b) != "kmodvm\n" {
		t.Errorf("staged hostname = %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(stage, "etc/hostname")); fi.Mode().Perm() != 0o600 {
		t.Errorf("staged hostname mode = %v, want 0600", fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(stage, "etc/new-file")); err != nil {
		t.Errorf("write through an absolute symlink did not land inside the stage: %v", err)
	}
	if after := snapshot(t, root); !maps.Equal(before, after) {
		t.Errorf("the root changed:\nbefore %v\nafter  %v", before, after)
	}
	if err := writeStaged(stage, "/etc/ssh", []byte("x"), 0o644); err == nil {
		t.Errorf("writing over a directory succeeded")
	}
}

func TestRemoveStaged(t *testing.T) {
	root := fakeRoot(t)
	stage := stageOf(t, root)
	removed, err := removeStaged(stage, "/etc/ssh/ssh_host_*")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(removed, ","); got != "/etc/ssh/ssh_host_ed25519_key,/etc/ssh/ssh_host_rsa_key,/etc/ssh/ssh_host_rsa_key.pub" {
		t.Errorf("removed %s", got)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ssh/ssh_host_rsa_key")); err != nil {
		t.Errorf("root lost its file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(stage, "etc/ssh/moduli")); err != nil {
		t.Errorf("unmatched file removed: %v", err)
	}
}

func TestFillStage(t *testing.T) {
	for _, init := range []string{InitTiny, InitSystemd} {
		t.Run(init, func(t *testing.T) {
			root := fakeRoot(t)
			stage := stageOf(t, root)
			before := snapshot(t, root)

			modules := filepath.Join(t.TempDir(), "modules")
			writeFile(t, filepath.Join(modules, "kernel/hello.ko"), "ko", 0o644)
			writeFile(t, filepath.Join(modules, "modules.dep"), "dep", 0o644)
			kdir := filepath.Join(t.TempDir(), "kdir")
			writeFile(t, filepath.Join(kdir, "Makefile"), "new makefile\n", 0o644)
			writeFile(t, filepath.Join(kdir, "scripts/fixdep"), "elf", 0o755)

			var log bytes.Buffer
			b := &diskBuild{ctx: context.Background(), log: discardLogger(), logFile: &log, failedLog: "/x.failed.log"}
			spec := DiskSpec{
				Root:   &Root{Dir: root, Hash: "h", Spec: Spec{Init: init}},
				Extras: []Tree{{Src: modules, Dst: "/lib/modules/7.2.0-kmodvm"}, {Src: kdir, Dst: "/usr/src/kdir"}},
			}
			if err := b.fillStage(stage, spec); err != nil {
				t.Fatalf("fillStage: %v\nlog:\n%s", err, log.String())
			}
			if after := snapshot(t, root); !maps.Equal(before, after) {
				t.Errorf("the root changed:\nbefore %v\nafter  %v", before, after)
			}

			mustRead := func(rel string) string {
				t.Helper()
				b, err := os.ReadFile(filepath.Join(stage, rel))
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			mode := func(rel string) os.FileMode {
				t.Helper()
				fi, err := os.Lstat(filepath.Join(stage, rel))
				if err != nil {
					t.Fatal(err)
				}
				return fi.Mode().Perm()
			}
			for _, gone := range []string{"usr/src/linux-source-7.2.tar.xz", "etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_rsa_key.pub"} {
				if _, err := os.Lstat(filepath.Join(stage, gone)); !os.IsNotExist(err) {
					t.Errorf("%s still in the stage", gone)
				}
			}
			if got := mustRead("usr/lib/modules/7.2.0-kmodvm/kernel/hello.ko"); got != "ko" {
				t.Errorf("module = %q", got)
			}
			if got := mustRead("usr/src/kdir/Makefile"); got != "new makefile\n" {
				t.Errorf("extra over an existing file = %q", got)
			}
			if mode("usr/src/kdir/scripts/fixdep") != 0o755 {
				t.Errorf("extra lost its mode")
			}
			if mustRead("etc/hostname") != Hostname+"\n" {
				t.Errorf("hostname = %q", mustRead("etc/hostname"))
			}
			if mode("root/.ssh") != 0o700 || mode("root/.ssh/authorized_keys") != 0o600 || mode("etc/ssh/ssh_host_ed25519_key") != 0o600 {
				t.Errorf("modes: .ssh %v authorized_keys %v host key %v", mode("root/.ssh"), mode("root/.ssh/authorized_keys"), mode("etc/ssh/ssh_host_ed25519_key"))
			}
			if mode("usr/sbin/kmodvm-init") != 0o755 || mode("usr/local/sbin/kmodvm-poweroff") != 0o755 || mode("usr/local/sbin/kmodvm-net") != 0o755 {
				t.Errorf("scripts are not 0755")
			}
			if !strings.Contains(mustRead("etc/ssh/sshd_config.d/kmodvm.conf"), "PerSourcePenalties no") {
				t.Errorf("sshd config lacks PerSourcePenalties no")
			}
			initScript := mustRead("usr/sbin/kmodvm-init")
			if init == InitSystemd {
				if !strings.Contains(initScript, "exec /lib/systemd/systemd") {
					t.Errorf("systemd init = %q", initScript)
				}
				if target, err := os.Readlink(filepath.Join(stage, "etc/systemd/system/multi-user.target.wants/ssh.service")); err != nil || target != "/lib/systemd/system/ssh.service" {
					t.Errorf("ssh.service not enabled: %q %v", target, err)
				}
			} else if !strings.Contains(initScript, "exec /usr/sbin/sshd -D -e") {
				t.Errorf("tiny init does not become sshd")
			}

			// The keys in the entry match the ones in the guest.
			entry := filepath.Dir(stage)
			if fi, err := os.Stat(filepath.Join(entry, clientKeyName)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("client key: %v %v", fi, err)
			}
			if got, want := mustReadAbs(t, filepath.Join(entry, clientKeyName+".pub")), mustRead("root/.ssh/authorized_keys"); got != want {
				t.Errorf("authorized_keys %q is not the client key %q", want, got)
			}
			if got, want := mustReadAbs(t, filepath.Join(entry, hostPubName)), mustRead("etc/ssh/ssh_host_ed25519_key.pub"); got != want {
				t.Errorf("host key pub %q differs from the guest's %q", got, want)
			}
			signer, err := ssh.ParsePrivateKey([]byte(mustRead("etc/ssh/ssh_host_ed25519_key")))
			if err != nil {
				t.Fatal(err)
			}
			if got := string(ssh.MarshalAuthorizedKey(signer.PublicKey())); !strings.HasPrefix(mustRead("etc/ssh/ssh_host_ed25519_key.pub"), strings.TrimSpace(got)) {
				t.Errorf("guest host key pair does not match")
			}
		})
	}
}

func mustReadAbs(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestContentSizeCountsHardlinksOnce(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a"), strings.Repeat("x", 10000), 0o644)
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	got, err := contentSize(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(12288 + 256 + 4096 + 256); got != want { // a's 3 blocks + the directory, an inode each
		t.Errorf("contentSize = %d, want %d", got, want)
	}
}

func TestAutoSizeGiB(t *testing.T) {
	for content, want := range map[int64]int{0: 8, 3 * gib: 8, 4*gib + 1: 9, 10 * gib: 20} {
		if got := autoSizeGiB(content); got != want {
			t.Errorf("autoSizeGiB(%d) = %d, want %d", content, got, want)
		}
	}
}
