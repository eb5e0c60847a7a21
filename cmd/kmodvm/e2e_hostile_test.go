package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/vm/sshtest"
)

// TestE2EHostile: one real guest, and the security properties and hostile inputs on it:
//   - SSH listens on 127.0.0.1 only; private keys, the base disk and state are owner-only;
//   - a module directory and parameters full of shell syntax are never run by a shell, on
//     the host or in the guest, and the parameter reaches the module exactly;
//   - a module's Kbuild, run by a host build, cannot change the shared toolchain root;
//   - exec passes argv through unchanged;
//   - a symlink leading out of the module tree is refused before anything is copied, and a
//     symlink planted in the guest's copy is never written through;
//   - a guest whose host key no longer matches the pinned one is refused, with a hint;
//   - no private key material in anything kmodvm prints (-v, --json) or in the console log.
func TestE2EHostile(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	name, stateDir := e2eVM(t, "hostile")
	n := []string{"-n", name}
	paths := e2ePaths(t)
	canary := fmt.Sprintf("kmodvm-canary-%d", os.Getpid())

	// Everything kmodvm prints here is kept, to look for secrets at the end.
	var printed strings.Builder
	kmodvm := func(args ...string) (int, string, string) {
		t.Helper()
		code, out, errOut := cli(t, ctx, args...)
		printed.WriteString(out + errOut)
		return code, out, errOut
	}
	must := func(args ...string) string {
		t.Helper()
		code, out, _ := kmodvm(args...)
		if code != 0 {
			t.Fatalf("kmodvm %s: exit %d", strings.Join(args, " "), code)
		}
		return out
	}
	guest := func(want int, args ...string) string {
		t.Helper()
		code, out, _ := kmodvm(append(append([]string{"exec"}, n...), append([]string{"--"}, args...)...)...)
		if code != want {
			t.Errorf("exec %q: exit %d, want %d", args, code, want)
		}
		return out
	}

	must(append([]string{"-v", "up"}, n...)...)
	var st struct {
		SSHPort    int    `json:"ssh_port"`
		ConsoleLog string `json:"console_log"`
	}
	if err := json.Unmarshal([]byte(must(append([]string{"-v", "status", "--json"}, n...)...)), &st); err != nil || st.SSHPort == 0 {
		t.Fatalf("status --json: ssh_port %d, %v", st.SSHPort, err)
	}
	in := readInstance(t, stateDir)

	t.Run("ssh listens on 127.0.0.1 only", func(t *testing.T) {
		listen := listeners(t, st.SSHPort)
		t.Logf("listening on port %d: %q", st.SSHPort, listen)
		if len(listen) == 0 {
			t.Fatalf("nothing listens on port %d (from /proc/net/tcp and tcp6)", st.SSHPort)
		}
		for _, addr := range listen {
			if addr != "127.0.0.1" {
				t.Errorf("port %d listens on %s; only 127.0.0.1 is allowed", st.SSHPort, addr)
			}
		}
	})

	// A module directory whose name is shell syntax, and a parameter value that is too.
	hostile := filepath.Join(t.TempDir(), "c hello 'sq' \"dq\" ;touch "+canary+"; $(touch "+canary+") `touch "+canary+"` \nnl")
	if err := os.Mkdir(hostile, 0o755); err != nil {
		t.Logf("this file system refuses a newline in a name (%v); going on without it", err)
		hostile = strings.TrimSuffix(hostile, " \nnl")
		if err := os.Mkdir(hostile, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyExample(t, "c-hello", hostile)
	remote := module.RemoteDir(hostile)
	whom := "wörld 'sq' ;$(touch /tmp/" + canary + ") `touch /tmp/" + canary + "` | & > * \\ $HOME voilà"

	t.Run("hostile directory name and parameter", func(t *testing.T) {
		code, out, _ := kmodvm(append(append([]string{"-v", "run", "--json", "--build", "host"}, n...), "-p", "whom="+whom, hostile)...)
		var res struct {
			Module  string `json:"module_dir"`
			Verdict string `json:"verdict"`
			Steps   []struct {
				Log []string `json:"log"`
			} `json:"steps"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || res.Verdict != "ok" {
			t.Fatalf("run: exit %d, verdict %q, %v", code, res.Verdict, err)
		}
		if res.Module != hostile {
			t.Errorf("module_dir = %q, want %q", res.Module, hostile)
		}
		want := "c_hello: Hello, " + whom + ", from C!"
		found := false
		for _, s := range res.Steps {
			for _, l := range s.Log {
				found = found || strings.HasSuffix(l, want)
			}
		}
		if !found {
			t.Errorf("no kernel log line ends in %q: %+v", want, res.Steps)
		}
	})

	t.Run("parameter the kernel cannot carry", func(t *testing.T) {
		code, _, errOut := kmodvm(append(append([]string{"run"}, n...), "-p", `whom=say "hi"`, hostile)...)
		if code != exitUsage || !strings.Contains(errOut, "double quote") || !strings.Contains(errOut, "hint:") {
			t.Errorf("run with a double quote in a value: exit %d, %q; want %d, a reason and a hint", code, errOut, exitUsage)
		}
	})

	t.Run("exec argv round trip", func(t *testing.T) {
		arg := whom + "\n\"dq\"\ttab\n"
		if out := guest(0, "sh", "-c", `printf %s "$1"`, "_", arg); out != arg {
			t.Errorf("exec printed %q, want %q", out, arg)
		}
	})

	t.Run("symlink out of the tree", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "leaky")
		copyExample(t, "c-hello", dir)
		if err := os.Symlink("/etc/shadow", filepath.Join(dir, "shadow")); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := kmodvm(append(append([]string{"run"}, n...), dir)...)
		if code != exitUsage || !strings.Contains(errOut, "symlink shadow -> /etc/shadow points outside the module directory") || !strings.Contains(errOut, "hint:") {
			t.Errorf("run with a symlink to /etc/shadow: exit %d, %q; want %d, the link named and a hint", code, errOut, exitUsage)
		}
		checkUserMessage(t, errOut)
		guest(1, "test", "-e", module.RemoteDir(dir)) // nothing was copied into the guest
		if _, err := os.Lstat(filepath.Join(stateDir, "hostbuild", filepath.Base(module.RemoteDir(dir)))); err == nil {
			t.Error("the refused tree was copied for a host build")
		}
	})

	t.Run("a Kbuild cannot change the toolchain root", func(t *testing.T) {
		// Kbuild is make: $(shell ...) runs at parse time, in the host build's sandbox.
		dir := filepath.Join(t.TempDir(), "rootwriter")
		copyExample(t, "c-hello", dir)
		mark := canary + "-kbuild"
		kbuild := "obj-m := c_hello.o\n$(shell touch /usr/lib/" + mark + " $(HOME)/" + mark + ")\n"
		if err := os.WriteFile(filepath.Join(dir, "Kbuild"), []byte(kbuild), 0o644); err != nil {
			t.Fatal(err)
		}
		if code, _, _ := kmodvm(append(append([]string{"run", "--build", "host"}, n...), dir)...); code != 0 {
			t.Errorf("run: exit %d, want 0 (the failed touch does not stop the build)", code)
		}
		for _, p := range []string{"usr/lib", "root"} {
			if _, err := os.Lstat(filepath.Join(in.RootDir, p, mark)); err == nil {
				t.Errorf("the module's Kbuild wrote %s into the shared toolchain root", filepath.Join(p, mark))
			}
		}
	})

	t.Run("symlinks planted in the guest", func(t *testing.T) {
		// Kbuild in the guest's copy becomes a link to a guest file, and the copy itself a
		// link to another directory.
		guest(0, "sh", "-c", `echo precious > /root/victim && ln -sfn /root/victim "$1/Kbuild" && `+
			`mkdir -p /root/elsewhere && mv "$1" "$1.real" && ln -s /root/elsewhere "$1"`, "_", remote)
		code, _, errOut := kmodvm(append(append([]string{"run"}, n...), "-p", "whom=x", hostile)...)
		if code != exitFailure || !strings.Contains(errOut, "is a symlink") || !strings.Contains(errOut, "hint:") {
			t.Errorf("run into a symlinked copy: exit %d, %q; want %d, a refusal and a hint", code, errOut, exitFailure)
		}
		if out := guest(0, "sh", "-c", `ls -A /root/elsewhere; rm "$1" && mv "$1.real" "$1"`, "_", remote); out != "" {
			t.Errorf("the sync wrote through the symlinked copy: /root/elsewhere holds %q", out)
		}
		if code, _, _ := kmodvm(append(append([]string{"run"}, n...), "-p", "whom=x", hostile)...); code != 0 {
			t.Errorf("run after the copy was put back: exit %d", code)
		}
		guest(0, "sh", "-c", `test -f "$1/Kbuild" && test ! -L "$1/Kbuild" && test "$(cat /root/victim)" = precious`, "_", remote)
	})

	t.Run("no command was run by a shell", func(t *testing.T) {
		wd, _ := os.Getwd()
		home, _ := os.UserHomeDir()
		dirs := []string{wd, "/", home, "/tmp", filepath.Dir(hostile), hostile}
		builds, _ := filepath.Glob(filepath.Join(stateDir, "hostbuild", "*"))
		for _, d := range append(dirs, builds...) {
			if _, err := os.Lstat(filepath.Join(d, canary)); err == nil {
				t.Errorf("canary %s appeared in %s on the host", canary, d)
			}
		}
		if out := guest(0, "sh", "-c", `find / -xdev -maxdepth 2 -name "$1"; find /tmp /root/kmodvm -maxdepth 3 -name "$1"`, "_", canary); out != "" {
			t.Errorf("canary appeared in the guest:\n%s", out)
		}
	})

	t.Run("private files", func(t *testing.T) {
		for _, d := range []string{paths.State, filepath.Join(paths.State, "vms"), stateDir} {
			checkMode(t, d, 0o700)
		}
		hostbuild := filepath.Join(stateDir, "hostbuild")
		mods, _ := filepath.Glob(filepath.Join(hostbuild, "*"))
		if len(mods) == 0 {
			t.Errorf("no host build directory in %s", hostbuild)
		}
		for _, d := range append(mods, hostbuild) {
			if strings.HasSuffix(d, module.SourceSuffix) { // whose sources a build copied
				checkMode(t, d, 0o600)
			} else {
				checkMode(t, d, 0o700)
			}
		}
		for _, f := range []string{"instance.json", "lock", "console.log"} {
			checkMode(t, filepath.Join(stateDir, f), 0o600)
		}
		// The client key, and the base disk, which holds the guest's private host key.
		checkMode(t, in.ClientKey, 0o600)
		checkMode(t, in.Base, 0o600)
		err := filepath.WalkDir(stateDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if fi, err := d.Info(); err == nil && d.Type() != fs.ModeSymlink && fi.Mode().Perm()&0o022 != 0 {
				t.Errorf("%s is writable by group or others (%v)", p, fi.Mode().Perm())
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})

	t.Run("host key swapped", func(t *testing.T) {
		instance := filepath.Join(stateDir, "instance.json")
		orig, err := os.ReadFile(instance)
		if err != nil {
			t.Fatal(err)
		}
		other := filepath.Join(t.TempDir(), "other_host_key")
		sshtest.NewKeyFiles(t, other)
		swapped := bytes.Replace(orig, []byte(strconv.Quote(in.HostPub)), []byte(strconv.Quote(other+".pub")), 1)
		if bytes.Equal(swapped, orig) {
			t.Fatalf("host_pub %s not found in %s", in.HostPub, instance)
		}
		if err := os.WriteFile(instance, swapped, 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := kmodvm(append(append([]string{"exec"}, n...), "--", "touch", "/root/"+canary)...)
		if err := os.WriteFile(instance, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		if code != exitFailure {
			t.Errorf("exec against a swapped host key: exit %d, want %d", code, exitFailure)
		}
		checkUserMessage(t, errOut)
		for _, want := range []string{"does not match the pinned key", other + ".pub", "nothing was sent to it", "hint: `kmodvm destroy -n " + name + " && kmodvm up -n " + name + "` recreates it"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("stderr lacks %q", want)
			}
		}
		guest(1, "test", "-e", "/root/"+canary) // the key restored, exec works, and the touch never ran
	})

	t.Run("no secrets printed", func(t *testing.T) {
		console, err := os.ReadFile(st.ConsoleLog)
		if err != nil {
			t.Fatal(err)
		}
		where := map[string]string{"kmodvm's output (-v, --json)": printed.String(), "the console log": string(console)}
		secrets := pemSecrets(t, mustRead(t, in.ClientKey))
		secrets = append(secrets, pemSecrets(t, guestHostKey(t, ctx, name))...)
		for place, text := range where {
			if strings.Contains(text, "PRIVATE KEY") {
				t.Errorf("%s holds a PRIVATE KEY block", place)
			}
			for _, s := range secrets {
				if strings.Contains(text, s) {
					t.Errorf("%s holds private key material (%d characters of it)", place, len(s))
				}
			}
		}
	})
}

// instanceFiles is what the test reads from a VM's instance.json.
type instanceFiles struct {
	ClientKey string `json:"client_key"`
	HostPub   string `json:"host_pub"`
	Base      string `json:"base_disk"`
	RootDir   string `json:"toolchain_root"`
}

func readInstance(t *testing.T, stateDir string) instanceFiles {
	t.Helper()
	var in instanceFiles
	if err := json.Unmarshal(mustRead(t, filepath.Join(stateDir, "instance.json")), &in); err != nil || in.ClientKey == "" || in.Base == "" || in.RootDir == "" {
		t.Fatalf("instance.json: %+v, %v", in, err)
	}
	return in
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyExample copies examples/NAME (flat) into dir.
func copyExample(t *testing.T, name, dir string) {
	t.Helper()
	src := filepath.Join(repoRoot(t), "examples", name)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.WriteFile(filepath.Join(dir, e.Name()), mustRead(t, filepath.Join(src, e.Name())), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func checkMode(t *testing.T, p string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Error(err)
		return
	}
	if fi.Mode().Perm() != want {
		t.Errorf("%s has mode %v, want %v", p, fi.Mode().Perm(), want)
	}
}

// listeners returns the local addresses of the sockets listening on TCP port, from
// /proc/net/tcp and /proc/net/tcp6 ("127.0.0.1", or the hex of an IPv6 address).
func listeners(t *testing.T, port int) []string {
	t.Helper()
	var addrs []string
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			hexAddr, hexPort, _ := strings.Cut(fields[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err != nil || int(p) != port {
				continue
			}
			addr := hexAddr // IPv4 is one little-endian word
			if len(hexAddr) == 8 {
				if v, err := strconv.ParseUint(hexAddr, 16, 32); err == nil {
					addr = fmt.Sprintf("%d.%d.%d.%d", v&0xff, v>>8&0xff, v>>16&0xff, v>>24)
				}
			}
			addrs = append(addrs, addr)
		}
	}
	return addrs
}

// pemSecrets returns the pieces of a PEM private key that must never be printed: each line
// of its body and the body as one string.
func pemSecrets(t *testing.T, key []byte) []string {
	t.Helper()
	var body []string
	for _, l := range strings.Split(strings.TrimSpace(string(key)), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "-----") {
			body = append(body, l)
		}
	}
	if len(body) == 0 {
		t.Fatal("no PEM body in the key")
	}
	return append(body, strings.Join(body, ""))
}

// guestHostKey reads the guest's private host key, not through cli: the test's log must not
// hold it either.
func guestHostKey(t *testing.T, ctx context.Context, name string) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(ctx, []string{"exec", "-n", name, "--", "cat", "/etc/ssh/ssh_host_ed25519_key"}, strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("read the guest's host key: exit %d: %s", code, errb.String())
	}
	return out.Bytes()
}
