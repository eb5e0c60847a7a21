package module

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/vm/sshclient"
	"github.com/kmodvm/kmodvm/vm/sshtest"
)

// The fake guest: guest.sh runs for real, by the in-process SSH server, as local /bin/sh
// processes. SAFETY (CI runs the tests as root): its PATH holds only the fakes below and a few
// harmless host tools, so no real insmod, rmmod or make can run; the kernel log, taint flags,
// module list, job file and module dirs are files in a temp dir.
//
// The fakes share lib.sh: klog LEVEL TEXT appends a record to the fake /dev/kmsg (numbered
// on from the last), taint N sets the taint flags. A test gives a fake its behaviour by
// writing shell code to $G/insmod.sh, $G/rmmod.sh or $G/make.sh (sourced with the fake's
// arguments); without one, insmod loads the module, rmmod unloads it, make writes hello.ko.

// hostTools are the host programs the fake guest may run (guest.sh's and the fakes').
var hostTools = []string{"sh", "bash", "dd", "cat", "rm", "sleep", "uname", "mkdir", "mv", "mkfifo"}

const fakeLib = `
klog() {
	read -r n < "$G/seq"
	n=$((n + 1))
	echo "$n" > "$G/seq"
	printf '%s,%s,%s,-;%s\n' "$1" "$n" "$((n * 1000))" "$2" >> "$G/kmsg"
}
taint() { echo "$1" > "$G/tainted"; }
`

const fakeInsmod = `#!/bin/sh
. "$G/lib.sh"
m=${1##*/}
m=${m%.ko}
if [ -f "$G/insmod.sh" ]; then . "$G/insmod.sh"; fi
echo "$m 16384 0 - Live 0x0" >> "$G/modules"
klog 6 "$m: loaded"
`

const fakeRmmod = `#!/bin/sh
. "$G/lib.sh"
if [ -f "$G/rmmod.sh" ]; then . "$G/rmmod.sh"; fi
: > "$G/modules.new"
while read -r l; do
	case $l in "$1 "*) ;; *) echo "$l" >> "$G/modules.new" ;; esac
done < "$G/modules"
mv "$G/modules.new" "$G/modules"
klog 6 "$1: unloaded"
`

const fakeMake = `#!/bin/sh
. "$G/lib.sh"
if [ -f "$G/make.sh" ]; then . "$G/make.sh"; fi
echo "  CC [M]  hello.o"
echo ko > hello.ko
`

type fakeGuest struct {
	t       *testing.T
	srv     *sshtest.Server
	cfg     sshclient.Config
	dir     string // $G: the guest's files
	files   guestFiles
	console string

	mu       sync.Mutex
	ssh      *sshclient.Client
	outside  string // StoppedFromOutside's answer
	restarts int
	recovery string // what Restart says it did; "": "rebooted"
	nmis     int
	closed   bool
}

func newFakeGuest(t *testing.T) *fakeGuest {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range hostTools {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatalf("the fake guest needs %s: %v", tool, err)
		}
		if err := os.Symlink(p, filepath.Join(bin, tool)); err != nil {
			t.Fatal(err)
		}
	}
	g := &fakeGuest{t: t, dir: dir, console: filepath.Join(dir, "console.log")}
	g.write("bin/insmod", fakeInsmod, 0o755)
	g.write("bin/rmmod", fakeRmmod, 0o755)
	g.write("bin/make", fakeMake, 0o755)
	g.write("lib.sh", fakeLib, 0o644)
	g.write("seq", "6\n", 0o644)
	g.write("kmsg", "6,5,100,-;booted\n6,6,200,-;sshd started\n", 0o644)
	g.write("tainted", "0\n", 0o644)
	g.write("modules", "", 0o644)
	g.write("console.log", "", 0o644)
	root := filepath.Join(dir, "root")
	g.files = guestFiles{Root: root, Kmsg: filepath.Join(dir, "kmsg"), Tainted: filepath.Join(dir, "tainted"),
		Modules: filepath.Join(dir, "modules"), Job: filepath.Join(dir, "kmodvm.job"),
		KUnit: filepath.Join(dir, "kunit"), Filter: filepath.Join(dir, "filter_glob"),
		SysRq: filepath.Join(dir, "sysrq-trigger")}

	host, user := sshtest.NewKey(t), sshtest.NewKey(t)
	g.srv = sshtest.NewServer(t, host, user.PublicKey(), sshtest.WithDir(dir), sshtest.WithEnv("PATH="+bin, "G="+dir))
	g.cfg = sshclient.Config{Addr: g.srv.Addr(), User: "root", Signer: user, HostKey: host.PublicKey()}
	g.dial()
	t.Cleanup(func() { g.Close() })
	return g
}

func (g *fakeGuest) dial() {
	g.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sshclient.Dial(ctx, g.cfg)
	if err != nil {
		g.t.Fatalf("dial the fake guest: %v", err)
	}
	g.mu.Lock()
	g.ssh = c
	g.mu.Unlock()
}

func (g *fakeGuest) write(name, content string, mode os.FileMode) {
	g.t.Helper()
	if err := os.WriteFile(filepath.Join(g.dir, name), []byte(content), mode); err != nil {
		g.t.Fatal(err)
	}
}

func (g *fakeGuest) read(name string) string {
	g.t.Helper()
	b, err := os.ReadFile(filepath.Join(g.dir, name))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		g.t.Fatal(err)
	}
	return string(b)
}

func (g *fakeGuest) SSH() *sshclient.Client {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ssh
}
func (g *fakeGuest) ConsoleLog() string { return g.console }

// Running is false once something (a fake, or the test) created $G/dead: the guest died.
func (g *fakeGuest) Running(context.Context) (bool, error) {
	_, err := os.Stat(filepath.Join(g.dir, "dead"))
	return errors.Is(err, os.ErrNotExist), nil
}
func (g *fakeGuest) StoppedFromOutside(context.Context) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.outside, nil
}

// InjectNMI does what kmodvm's guest kernel does with one: when the test wrote
// $G/nmi-console (the panic and its trace), it goes to the console and the guest dies.
func (g *fakeGuest) InjectNMI(context.Context) error {
	g.mu.Lock()
	g.nmis++
	g.mu.Unlock()
	b, err := os.ReadFile(filepath.Join(g.dir, "nmi-console"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	f, err := os.OpenFile(g.console, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(g.dir, "dead"), nil, 0o644)
}

// Restart is a fresh boot: a new kernel log numbered from 1, nothing loaded, no taint.
func (g *fakeGuest) Restart(context.Context) (string, error) {
	g.mu.Lock()
	g.restarts++
	old := g.ssh
	g.mu.Unlock()
	old.Close()
	g.write("seq", "1\n", 0o644)
	g.write("kmsg", "6,1,100,-;booted again\n", 0o644)
	g.write("tainted", "0\n", 0o644)
	g.write("modules", "", 0o644)
	if err := os.Remove(filepath.Join(g.dir, "dead")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	g.dial()
	if g.recovery != "" {
		return g.recovery, nil
	}
	return "rebooted", nil
}

func (g *fakeGuest) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return g.ssh.Close()
}

// runner returns a Runner on the fake guest with toolchain for host builds.
func (g *fakeGuest) runner(tc Toolchain) *Runner {
	return &Runner{
		Connect:    func(context.Context) (Guest, error) { return g, nil },
		Toolchain:  tc,
		KDir:       g.t.TempDir(),
		guestFiles: g.files,
	}
}

// shellToolchain runs a shell snippet in place of the host's make, in the host dir bound at
// the build's working dir (the scratch copy of the module).
type shellToolchain struct{ script string }

func (f shellToolchain) Command(ctx context.Context, opt images.RunOptions, _ ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", f.script)
	for _, b := range opt.Binds {
		if b.Guest == opt.Dir {
			c.Dir = b.Host
		}
	}
	c.Stdout, c.Stderr = opt.Stdout, opt.Stderr
	return c
}

// moduleSource is a module dir with a Kbuild and one source file.
func moduleSource(t *testing.T) Source {
	t.Helper()
	dir := moduleDir(t)
	if err := os.WriteFile(filepath.Join(dir, "hello.c"), []byte("int x;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return Source{Dir: dir}
}

func logText(st Step) string { return strings.Join(st.Log, "\n") }
