package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/sshtest"
)

// TestE2EDoctorRemote: `kmodvm doctor --uri qemu+ssh://...` checks the host behind the URI
// (here this machine's libvirtd reached through OpenSSH's sshd on 127.0.0.1, as a remote
// sshd would forward it): libvirt and QEMU versions, CPUs and memory, kmodvm's storage
// pool and its free space, and KVM by booting the cached kernel there, which must agree
// with the local probe.
func TestE2EDoctorRemote(t *testing.T) {
	e2eEnv(t)
	ctx := context.Background()
	uri := e2eRemoteHost(t)
	_, out, _ := cli(t, ctx, "doctor", "--json", "--uri", uri)
	var d doctorJSON
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	checks := map[string]check{}
	for _, c := range d.Checks {
		checks[c.Name] = c
	}
	for name, want := range map[string]string{
		"libvirt": "reachable (libvirt ", "host": "CPUs", "pool": "storage pool kmodvm at /var/lib/libvirt/images/kmodvm: ",
	} {
		if c := checks[name]; c.Status != "ok" || !strings.Contains(c.Detail, want) {
			t.Errorf("check %s = %+v, want ok saying %q", name, c, want)
		}
	}
	if !strings.Contains(checks["libvirt"].Detail, "QEMU ") {
		t.Errorf("the libvirt check does not name QEMU's version: %q", checks["libvirt"].Detail)
	}
	kernels := sandbox.CachedKernels(e2ePaths(t).Cache)
	if len(kernels) == 0 {
		t.Fatal("no cached kernel: the tests before this one build it")
	}
	localOK, localDetail, err := vm.ProbeKVM(ctx, vm.AccelProbe{Kernel: kernels[0]})
	if err != nil {
		t.Fatal(err)
	}
	if kvm := checks["kvm"]; (kvm.Status == "ok") != localOK {
		t.Errorf("doctor --uri says of KVM %+v; the local probe says %v (%s)", kvm, localOK, localDetail)
	}
	uploaded := filepath.Join(vm.PoolDir, filepath.Base(filepath.Dir(kernels[0]))+"-bzImage")
	if out, err := exec.Command("cmp", kernels[0], uploaded).CombinedOutput(); err != nil {
		t.Errorf("the kernel doctor booted is not in the pool as %s: %v %s", uploaded, err, out)
	}
}

// e2eRemoteHost is a qemu+ssh:// URI to this machine's system libvirtd through OpenSSH's
// sshd, as a remote host is reached: the test starts one on a free port of 127.0.0.1 with a
// config of its own (a generated host key, in the URI's known_hosts=; one authorized client
// key, the URI's keyfile=; root by key only; forwarding of unix sockets, libvirt's, and of
// TCP, the guest's loopback port) and stops it at the end. kmodvm's storage pool on the
// machine is removed afterwards if the test made it.
func e2eRemoteHost(t *testing.T) string {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	addr := startSSHD(t)
	dir := t.TempDir()
	keyFile, kh := filepath.Join(dir, "id"), filepath.Join(dir, "known_hosts")
	client := sshtest.NewKeyFiles(t, keyFile)
	if err := os.WriteFile(filepath.Join(addr.dir, "authorized_keys"), ssh.MarshalAuthorizedKey(client.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr.hostPort)}, addr.hostKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if exec.Command("virsh", "-c", vm.URISystem, "pool-info", vm.PoolName).Run() != nil {
		t.Cleanup(func() {
			for _, args := range [][]string{{"pool-destroy", vm.PoolName}, {"pool-undefine", vm.PoolName}} {
				_ = exec.Command("virsh", append([]string{"-c", vm.URISystem}, args...)...).Run()
			}
			_ = os.RemoveAll(vm.PoolDir)
		})
	}
	return "qemu+ssh://root@" + addr.hostPort + "/system?" + url.Values{"keyfile": {keyFile}, "known_hosts": {kh}}.Encode()
}

// sshdAddr is where startSSHD's sshd listens, its host key, and its directory (which holds
// its config and the authorized_keys it reads at each login).
type sshdAddr struct {
	hostPort string
	hostKey  ssh.PublicKey
	dir      string
}

// sshdPath is where Debian's openssh-server puts sshd; it must be started by its absolute
// path, since it re-executes itself for each connection.
const sshdPath = "/usr/sbin/sshd"

// startSSHD starts OpenSSH's sshd on a free port of 127.0.0.1, in the foreground, logging to
// sshd.log in its directory (printed when the test failed), and waits until it answers.
func startSSHD(t *testing.T) sshdAddr {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Fatalf("OpenSSH's sshd is not installed (%v); hint: bash scripts/deps.sh installs openssh-server", err)
	}
	dir := t.TempDir()
	hostKeyFile := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kmodvm-e2e", "-f", hostKeyFile).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pubText, err := os.ReadFile(hostKeyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	hostKey, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := l.Addr().String()
	l.Close()
	// Not PAM: its session stack wants a login uid, which a container may not give. Without
	// it, sshd refuses only a locked account ("!" in /etc/shadow), which root is not here.
	config := strings.Join([]string{
		"ListenAddress " + hostPort,
		"HostKey " + hostKeyFile,
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"PidFile none",
		"UsePAM no",
		"StrictModes no",
		"PermitRootLogin prohibit-password",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"AllowTcpForwarding yes",
		"AllowStreamLocalForwarding yes",
		"LogLevel VERBOSE",
		"",
	}, "\n")
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// The privilege separation directory sshd insists on (the package's service makes it).
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "sshd.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgFile)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			out, _ := os.ReadFile(logFile)
			t.Logf("sshd's log:\n%s", out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if sshdAnswers(hostPort) {
			return sshdAddr{hostPort: hostPort, hostKey: hostKey, dir: dir}
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logFile)
			t.Fatalf("sshd exited (%v) before it answered on %s:\n%s", err, hostPort, out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logFile)
			t.Fatalf("sshd did not answer on %s within 30 s:\n%s", hostPort, out)
		}
	}
}

// sshdAnswers says whether an SSH server at hostPort sends its version line.
func sshdAnswers(hostPort string) bool {
	c, err := net.DialTimeout("tcp", hostPort, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "SSH-"
}

// TestE2ERemoteUp: a VM on a "remote" host (this machine's libvirtd behind an SSH server on
// 127.0.0.1, OpenSSH's): up uploads the kernel and base disk into the host's pool and boots from
// there, the guest's SSH is reached through the host's loopback, a module runs with its
// kernel log judged (the console log copied from the host when needed), and destroy
// removes the VM's own volumes, keeping the shared kernel and disk for the next VM.
func TestE2ERemoteUp(t *testing.T) {
	e2eEnv(t)
	ctx := context.Background()
	uri := e2eRemoteHost(t)
	name, _ := e2eVM(t, "e2e-remote")
	n := []string{"-n", name, "--uri", uri}
	t.Cleanup(func() {
		if domainExists(name) {
			cli(t, context.Background(), append([]string{"destroy"}, n...)...)
		}
	})
	_, _, errOut := cli(t, ctx, append([]string{"up"}, n...)...)
	if !domainExists(name) {
		t.Fatalf("up on %s: no domain", uri)
	}
	for _, l := range strings.Split(errOut, "\n") {
		if strings.Contains(l, "uploading") && strings.Contains(l, "100%") {
			t.Logf("MEASURE first remote up: %s", l)
		}
	}
	xml, err := exec.Command("virsh", "-c", vm.URISystem, "dumpxml", e2eDomain(name)).Output()
	if err != nil || !strings.Contains(string(xml), vm.PoolDir+"/") {
		t.Errorf("the domain does not boot from the pool (%v):\n%s", err, xml)
	}
	if out := mustCLI(t, ctx, append(n, "exec", "--", "uname", "-r")...); !strings.Contains(out, "-kmodvm-") {
		t.Errorf("exec uname -r in the remote VM: %q", out)
	}
	root := repoRoot(t)
	code, out, _ := cli(t, ctx, append(append([]string{"run"}, n...), "--json", filepath.Join(root, "examples/c-hello"))...)
	if code != 0 || !strings.Contains(out, `"verdict": "ok"`) {
		t.Errorf("run examples/c-hello on the remote VM: exit %d\n%s", code, out)
	}
	code, out, _ = cli(t, ctx, append(append([]string{"run"}, n...), filepath.Join(root, "testdata/modules/panic-c"))...)
	if code != 5 || !strings.Contains(out, "Kernel panic") {
		t.Errorf("a module that panics the remote VM: exit %d, want 5 with the panic from the host's console log\n%s", code, out)
	}
	mustCLI(t, ctx, append([]string{"destroy"}, n...)...)
	vols, _ := filepath.Glob(filepath.Join(vm.PoolDir, e2eDomain(name)+"*"))
	if len(vols) != 0 {
		t.Errorf("destroy left the VM's volumes %v", vols)
	}
	shared, _ := filepath.Glob(filepath.Join(vm.PoolDir, "*-base.qcow2"))
	if len(shared) == 0 {
		t.Errorf("destroy removed the shared base disk from the pool")
	}
}
