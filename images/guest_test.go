package images

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/kmodvm/kmodvm/vm/golden"
)

// TestGuestFilesGolden compares every file written into the guest with
// testdata/guest/<name>.golden, and checks the shell scripts' syntax with sh -n.
func TestGuestFilesGolden(t *testing.T) {
	for _, init := range []string{InitTiny, InitSystemd} {
		for _, f := range guestFiles(init) {
			t.Run(init+f.Path, func(t *testing.T) {
				name := path.Base(f.Path)
				if f.Path == GuestInit {
					name += "-" + init // the only file that differs between the inits
				}
				golden.Check(t, filepath.Join("testdata", "guest", name+".golden"), []byte(f.Data))
				if strings.HasPrefix(f.Data, "#!/bin/sh") {
					if f.Mode != 0o755 {
						t.Errorf("script %s has mode %o", f.Path, f.Mode)
					}
					shellSyntax(t, f.Data)
				}
			})
		}
	}
}

func shellSyntax(t *testing.T, script string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	cmd := exec.Command(sh, "-n")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v: %s", err, out)
	}
}

func TestTinyInit(t *testing.T) {
	var init string
	for _, f := range guestFiles(InitTiny) {
		if f.Path == GuestInit {
			init = f.Data
		}
	}
	// What the host and the guest kernel rely on, in the order it must happen.
	steps := []string{
		"mnt proc /proc", "mnt sysfs /sys", "mnt devtmpfs /dev", "ptmxmode=0666", "mnt tmpfs /run",
		"mnt tmpfs /tmp", "mnt tmpfs /dev/shm", "/proc/sys/kernel/hostname", GuestNet,
		"mkdir -p /run/sshd", `say "sshd starting"`, "exec /usr/sbin/sshd -D -e",
	}
	last := -1
	for _, s := range steps {
		i := strings.Index(init, s)
		if i < 0 {
			t.Errorf("tiny init lacks %q", s)
			continue
		}
		if i < last {
			t.Errorf("%q comes too early in the tiny init", s)
		}
		last = i
	}
	if !strings.Contains(init, `say() { echo "kmodvm-init: $*"; }`) || InitMarkerSSHD != "kmodvm-init: sshd starting" {
		t.Errorf("the console marker and InitMarkerSSHD disagree")
	}
}

func TestSSHDConfig(t *testing.T) {
	for _, want := range []string{
		"PermitRootLogin prohibit-password", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
		"PerSourcePenalties no", "HostKey /etc/ssh/ssh_host_ed25519_key", "UseDNS no", "UsePAM no",
	} {
		if !strings.Contains(sshdConfig, "\n"+want+"\n") {
			t.Errorf("sshd config lacks %q", want)
		}
	}
}

func TestNewKeyPair(t *testing.T) {
	kp, err := newKeyPair("kmodvm-client")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(kp.Private)
	if err != nil {
		t.Fatalf("private key does not parse: %v", err)
	}
	pub, comment, _, rest, err := ssh.ParseAuthorizedKey(kp.Public)
	if err != nil {
		t.Fatalf("public key does not parse: %v", err)
	}
	if comment != "kmodvm-client" || len(rest) != 0 || !strings.HasSuffix(string(kp.Public), "\n") {
		t.Errorf("public key line %q", kp.Public)
	}
	if pub.Type() != ssh.KeyAlgoED25519 || string(pub.Marshal()) != string(signer.PublicKey().Marshal()) {
		t.Errorf("public key %s does not match the private key", pub.Type())
	}
	other, err := newKeyPair("")
	if err != nil {
		t.Fatal(err)
	}
	if string(other.Private) == string(kp.Private) {
		t.Errorf("two key pairs are the same")
	}
}

func TestWriteKeyFilesModes(t *testing.T) {
	dir := t.TempDir()
	client, _ := newKeyPair("c")
	host, _ := newKeyPair("h")
	old := setUmask(0) // a permissive umask must not widen the private key
	defer setUmask(old)
	if err := writeKeyFiles(dir, client, host); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{clientKeyName: 0o600, clientKeyName + ".pub": 0o644, hostPubName: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
}
