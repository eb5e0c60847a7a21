package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/crashes"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/sshclient"
	"github.com/kmodvm/kmodvm/vm/sshtest"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

// testTimeout bounds waits for things that must happen; it guards against hangs and is never
// what a test asserts.
const testTimeout = 30 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// fixture is a Sandbox on a fake libvirt with temp State and Cache dirs, the cached files a
// VM boots from (fake kernel and base disk, real SSH keys), and an in-process SSH server
// standing in for the guest's sshd, reached through a fake QEMU port forward.
type fixture struct {
	t     *testing.T
	lv    *vmtest.Libvirt
	sb    *Sandbox
	opt   Options
	srv   *sshtest.Server
	qemu  *fakeQEMU
	cache struct{ kernel, base, clientKey, hostPub string }

	mu     sync.Mutex
	status []string
	fixes  int   // restored guests fixed up
	fixErr error // what fixing one up returns
	free   int64 // free space the sandbox sees
}

func newFixture(t *testing.T, mods ...func(*Options)) *fixture {
	t.Helper()
	fx := &fixture{t: t, lv: vmtest.NewLibvirt()}
	fx.opt = Options{
		State: t.TempDir(), Cache: t.TempDir(),
		MemoryMiB: 512, CPUs: 1, BootTimeout: testTimeout,
		User:       &testUser,
		LookupUser: testLookupUser,
		ProbeKVM: func(context.Context, vm.AccelProbe) (bool, string, error) {
			t.Error("the KVM probe ran")
			return false, "", nil
		},
		Status: func(s string) {
			fx.mu.Lock()
			defer fx.mu.Unlock()
			fx.status = append(fx.status, s)
		},
	}
	for _, m := range mods {
		m(&fx.opt)
	}
	fx.sb = New(fx.lv, fx.opt)
	// The test's files are the process's; to the sandbox they are testUser's.
	fx.sb.consoleStat = statAs(testUser.UID)

	c := &fx.cache
	c.kernel = writeFile(t, filepath.Join(fx.opt.Cache, "kernels", "k1", "bzImage"), "not a kernel")
	c.base = writeFile(t, filepath.Join(fx.opt.Cache, "images", "d1", "base.qcow2"), "not a disk")
	c.clientKey = filepath.Join(fx.opt.Cache, "images", "d1", "id_ed25519")
	hostKey := filepath.Join(fx.opt.Cache, "images", "d1", "ssh_host_ed25519_key")
	c.hostPub = hostKey + ".pub"
	client := sshtest.NewKeyFiles(t, c.clientKey)
	fx.srv = sshtest.NewServer(t, sshtest.NewKeyFiles(t, hostKey), client.PublicKey())

	fx.qemu = newFakeQEMU(t, fx.srv.Addr())
	fx.lv.OnCall("DomainCreate", func(name string) {
		if d, ok := fx.lv.Domain(name); ok {
			fx.qemu.start(name, d.XML)
		}
	})
	fx.lv.OnCall("DomainDestroy", fx.qemu.stop)
	fx.lv.OnSaved(fx.qemu.stop)
	fx.lv.OnRestored(fx.qemu.start)
	fx.sb.fixGuest = fx.fixGuest
	fx.sb.freeSpace = func(string) (int64, error) { return fx.free, nil }
	fx.free = 1 << 40
	fx.sb.createOverlay = func(_ context.Context, base, overlay string) error {
		return os.WriteFile(overlay, []byte("fresh overlay on "+base), 0o600)
	}
	return fx
}

// fixGuest records the fix-up of a restored guest (the test SSH server would run the real
// one on the host).
func (fx *fixture) fixGuest(ctx context.Context, c *sshclient.Client) error {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	fx.fixes++
	return fx.fixErr
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sshPort is the port of the SSH server itself (for VMs the fake libvirt reports running,
// whose port forward "already exists").
func (fx *fixture) sshPort() int {
	fx.t.Helper()
	_, p, err := net.SplitHostPort(fx.srv.Addr())
	if err != nil {
		fx.t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		fx.t.Fatal(err)
	}
	return n
}

// instance writes the state dir of VM name (instance.json, as a finished `up` leaves it)
// pointing at the fixture's cache, with the given SSH port.
func (fx *fixture) instance(name string, port int) *Instance {
	fx.t.Helper()
	uuid, err := vm.NewDomainUUID()
	if err != nil {
		fx.t.Fatal(err)
	}
	dir := filepath.Join(vmsDir(fx.opt.State), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		fx.t.Fatal(err)
	}
	in := &Instance{
		Name: name, UUID: uuid, Accel: vm.AccelTCG, SSHPort: port, MemoryMiB: 512, CPUs: 1,
		Kernel: fx.cache.kernel, Cmdline: Cmdline, KernelRelease: "6.12.0-kmodvm", KernelKey: "k1", ConfigHash: "c0ffee",
		Base: fx.cache.base, DiskKey: "d1", ClientKey: fx.cache.clientKey, HostPub: fx.cache.hostPub,
		Toolchain: map[string]string{"rustc": "1.85.0"}, Suite: "bookworm",
		Created: time.Now().UTC(), dir: dir,
	}
	if err := in.save(); err != nil {
		fx.t.Fatal(err)
	}
	return in
}

// define defines the instance's domain as an earlier `up` did (stopped).
func (fx *fixture) define(in *Instance) {
	fx.t.Helper()
	spec := in.DomainSpec(fx.opt.URI, *fx.sb.opt.User)
	if err := vm.NewDriver(fx.lv, nil).Define(context.Background(), spec); err != nil {
		fx.t.Fatal(err)
	}
}

// statAs is statOwner that reports the process's files as uid's.
func statAs(uid int) func(string) (int, int64, error) {
	return func(path string) (int, int64, error) {
		owner, size, err := statOwner(path)
		if owner == os.Getuid() {
			owner = uid
		}
		return owner, size, err
	}
}

// as returns a fixture for user u with its own state directory, on the same fake libvirt,
// guest and cache as fx: another user of the same libvirt daemon.
func (fx *fixture) as(u User) *fixture {
	o := fx.opt
	o.State = fx.t.TempDir()
	o.User = &u
	other := &fixture{t: fx.t, lv: fx.lv, opt: o, srv: fx.srv, qemu: fx.qemu, cache: fx.cache}
	other.sb = New(fx.lv, o)
	other.sb.consoleStat = statAs(u.UID)
	return other
}

// testUser is who the fixture's sandbox runs as.
var testUser = User{UID: 1000, GID: 1000, Name: "alice"}

// testLookupUser knows root and alice.
func testLookupUser(uid int) string {
	return map[int]string{0: "root", 1000: "alice"}[uid]
}

// owned makes the fake libvirt have a domain dn in state st whose kmodvm metadata names
// owner o (no call recorded but the define).
func (fx *fixture) owned(dn string, o vm.Owner, st libvirt.DomainState) {
	fx.t.Helper()
	spec := vm.DomainSpec{Name: dn, Accel: vm.AccelTCG, MemoryMiB: 512, CPUs: 1, Kernel: "/k", Disk: "/d", SSHPort: 22, Owner: &o}
	if err := vm.NewDriver(fx.lv, nil).Define(context.Background(), spec); err != nil {
		fx.t.Fatal(err)
	}
	if err := fx.lv.SetState(dn, st, 0); err != nil {
		fx.t.Fatal(err)
	}
}

// ours is the owner metadata the fixture's sandbox writes for VM name.
func (fx *fixture) ours(name string) vm.Owner {
	return vm.Owner{UID: testUser.UID, User: testUser.Name, StateDir: filepath.Join(vmsDir(fx.opt.State), name), VM: name}
}

// running makes the fake libvirt have domain kmodvm-NAME running, as a VM created before
// domains carried an owner (see fixture.instance) left it.
func (fx *fixture) running(name string) {
	fx.t.Helper()
	if err := fx.lv.AddDomain(legacyDomainName(name), libvirt.DomainRunning); err != nil {
		fx.t.Fatal(err)
	}
}

func (fx *fixture) statusLines() []string {
	fx.mu.Lock()
	defer fx.mu.Unlock()
	return slices.Clone(fx.status)
}

// freePort returns a port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// busyPort returns a port a listener holds until the test ends.
func busyPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}

var hostfwdRE = regexp.MustCompile(`hostfwd=tcp:127\.0\.0\.1:([0-9]+)-:22`)

// xmlPort returns the forwarded SSH port of a domain XML (0 if none).
func xmlPort(x string) int {
	m := hostfwdRE.FindStringSubmatch(x)
	if m == nil {
		return 0
	}
	p, _ := strconv.Atoi(m[1])
	return p
}

// fakeQEMU stands in for QEMU's user-mode port forward: when the fake libvirt starts a
// domain, it listens on the hostfwd port of the domain's XML and forwards connections to the
// SSH server (the guest's sshd); when the domain is destroyed it stops listening and drops
// the connections, as an exiting QEMU does.
type fakeQEMU struct {
	t      *testing.T
	target string
	wg     sync.WaitGroup

	mu   sync.Mutex
	fwds map[string]*forward
}

type forward struct {
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
}

func newFakeQEMU(t *testing.T, target string) *fakeQEMU {
	q := &fakeQEMU{t: t, target: target, fwds: map[string]*forward{}}
	t.Cleanup(func() {
		q.mu.Lock()
		var names []string
		for n := range q.fwds {
			names = append(names, n)
		}
		q.mu.Unlock()
		for _, n := range names {
			q.stop(n)
		}
		q.wg.Wait()
	})
	return q
}

func (q *fakeQEMU) start(name, xml string) {
	port := xmlPort(xml)
	if port == 0 {
		q.t.Errorf("domain %s started without an SSH port forward in its XML:\n%s", name, xml)
		return
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		q.t.Errorf("fake QEMU of %s: cannot forward port %d: %v", name, port, err)
		return
	}
	fw := &forward{ln: ln, conns: map[net.Conn]struct{}{}}
	q.mu.Lock()
	q.fwds[name] = fw
	q.mu.Unlock()
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			q.pipe(fw, c)
		}
	}()
}

func (q *fakeQEMU) pipe(fw *forward, c net.Conn) {
	g, err := net.Dial("tcp", q.target)
	if err != nil {
		c.Close()
		return
	}
	q.mu.Lock()
	if fw.closed {
		q.mu.Unlock()
		c.Close()
		g.Close()
		return
	}
	fw.conns[c], fw.conns[g] = struct{}{}, struct{}{}
	q.mu.Unlock()
	copyThenClose := func(dst, src net.Conn) {
		defer q.wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	q.wg.Add(2)
	go copyThenClose(g, c)
	go copyThenClose(c, g)
}

func (q *fakeQEMU) stop(name string) {
	q.mu.Lock()
	fw := q.fwds[name]
	delete(q.fwds, name)
	var conns []net.Conn
	if fw != nil {
		fw.closed = true
		for c := range fw.conns {
			conns = append(conns, c)
		}
	}
	q.mu.Unlock()
	if fw == nil {
		return
	}
	fw.ln.Close()
	for _, c := range conns {
		c.Close()
	}
}

// wantErr checks that err's text, followed by "; remedy: " and its remedy's actions when it
// has one ("; remedy: RemoveVM, PickName"), contains each part.
func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	text := err.Error()
	if re := remedy.Find(err); re != nil {
		text += "; remedy: " + actions(re.Do)
	}
	for _, p := range parts {
		if !strings.Contains(text, p) {
			t.Errorf("error %q lacks %q", text, p)
		}
	}
}

func actions(do []remedy.Action) string {
	var names []string
	for _, a := range do {
		names = append(names, a.String())
	}
	return strings.Join(names, ", ")
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"dev", true},
		{"a", true},
		{"0vm", true},
		{"rust-for-linux-2", true},
		{strings.Repeat("a", 40), true},
		{strings.Repeat("a", 41), false},
		{"", false},
		{"Dev", false},
		{"-dev", false},
		{"dev_1", false},
		{"dev.1", false},
		{"dev/x", false},
		{"../dev", false},
		{"dev ", false},
		{"dév", false},
	}
	for _, tt := range tests {
		err := CheckName(tt.name)
		if tt.ok && err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", tt.name, err)
		}
		if !tt.ok {
			if err == nil {
				t.Errorf("CheckName(%q) = nil, want an error", tt.name)
				continue
			}
			wantErr(t, err, strconv.Quote(tt.name), "remedy: PickName")
		}
	}
}

func TestConsoleTail(t *testing.T) {
	dir := t.TempDir()
	var big strings.Builder
	for i := range 20000 { // ~190 KiB: more than ConsoleTail reads
		fmt.Fprintf(&big, "line %d\r\n", i)
	}
	tests := []struct {
		name    string
		content string
		n       int
		want    string
	}{
		{"crlf, more lines than asked", "a\r\nb\r\nc\r\nd\r\n", 2, "c\nd"},
		{"fewer lines than asked", "a\r\nb\r\n", 15, "a\nb"},
		{"last line unterminated", "a\r\nb\r\nKernel panic - not syncing", 2, "b\nKernel panic - not syncing"},
		{"bare carriage returns dropped", "100%\r 50%\rdone\r\n", 1, "100% 50%done"},
		{"large file", big.String(), 3, "line 19997\nline 19998\nline 19999"},
		{"empty", "", 5, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")), tt.content)
			if got := ConsoleTail(p, tt.n); got != tt.want {
				t.Errorf("ConsoleTail(n=%d) = %q, want %q", tt.n, got, tt.want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		got := ConsoleTail(filepath.Join(dir, "nope"), 5)
		if !strings.HasPrefix(got, "(no console output: ") || !strings.Contains(got, "no such file") {
			t.Errorf("ConsoleTail of a missing file = %q", got)
		}
	})
}

func TestDestroy(t *testing.T) {
	tests := []struct {
		name      string
		vm        string
		setup     func(fx *fixture)
		wantErr   []string
		wantCalls []string // DomainDestroy / DomainUndefineFlags calls
		wantDoms  []string // domains left
		wantState bool     // the VM's state dir is still there
	}{
		{
			name:    "no such VM",
			vm:      "dev",
			wantErr: []string{`there is no VM named "dev"`, "no domain kmodvm-1000-dev", "remedy: ListVMs"},
		},
		{
			name:    "invalid name",
			vm:      "../etc",
			wantErr: []string{`VM name "../etc" is not valid`},
		},
		{
			name:      "stopped VM",
			vm:        "dev",
			setup:     func(fx *fixture) { fx.define(fx.instance("dev", freePort(fx.t))) },
			wantCalls: []string{"DomainUndefineFlags kmodvm-dev"},
		},
		{
			name: "running VM, its crash bundles too",
			vm:   "dev",
			setup: func(fx *fixture) {
				in := fx.instance("dev", fx.sshPort())
				if _, err := crashes.Save(in.CrashesDir(), crashes.Bundle{Meta: crashes.Meta{Module: "m"}}); err != nil {
					fx.t.Fatal(err)
				}
				fx.running("dev")
			},
			wantCalls: []string{"DomainDestroy kmodvm-dev", "DomainUndefineFlags kmodvm-dev"},
		},
		{
			name:      "state dir deleted behind our back",
			vm:        "dev",
			setup:     func(fx *fixture) { fx.owned("kmodvm-1000-dev", fx.ours("dev"), libvirt.DomainRunning) },
			wantCalls: []string{"DomainDestroy kmodvm-1000-dev", "DomainUndefineFlags kmodvm-1000-dev"},
		},
		{
			// Without instance.json nothing says the legacy domain is this user's: under
			// qemu:///system it may be another user's VM of the same name.
			name:     "legacy domain without state is left alone",
			vm:       "dev",
			setup:    func(fx *fixture) { fx.running("dev") },
			wantErr:  []string{`there is no VM named "dev"`},
			wantDoms: []string{"kmodvm-dev"},
		},
		{
			name: "another user's domain named like ours",
			vm:   "dev",
			setup: func(fx *fixture) {
				fx.owned("kmodvm-1000-dev", vm.Owner{UID: 0, StateDir: "/root/.local/state/kmodvm/vms/dev", VM: "dev"}, libvirt.DomainRunning)
			},
			wantErr:  []string{"kmodvm-1000-dev belongs to uid 0 (root), not to you (uid 1000)", "leaves it alone", "hint: "},
			wantDoms: []string{"kmodvm-1000-dev"},
		},
		{
			name: "our name without kmodvm metadata",
			vm:   "dev",
			setup: func(fx *fixture) {
				if err := fx.lv.AddDomain("kmodvm-1000-dev", libvirt.DomainRunning); err != nil {
					fx.t.Fatal(err)
				}
			},
			wantErr:  []string{"kmodvm-1000-dev was not defined by kmodvm for you", "no kmodvm owner metadata"},
			wantDoms: []string{"kmodvm-1000-dev"},
		},
		{
			name: "our domain of another state directory",
			vm:   "dev",
			setup: func(fx *fixture) {
				o := fx.ours("dev")
				o.StateDir = "/elsewhere/vms/dev"
				fx.owned("kmodvm-1000-dev", o, libvirt.DomainShutoff)
			},
			wantErr:  []string{"belongs to the kmodvm state directory /elsewhere/vms/dev"},
			wantDoms: []string{"kmodvm-1000-dev"},
		},
		{
			name:  "domain undefined behind our back",
			vm:    "dev",
			setup: func(fx *fixture) { fx.instance("dev", freePort(fx.t)) },
		},
		{
			name: "other domains are not touched",
			vm:   "dev",
			setup: func(fx *fixture) {
				fx.define(fx.instance("dev", freePort(fx.t)))
				fx.instance("other", freePort(fx.t))
				fx.running("other")
				for _, n := range []string{"dev", "kmodvm-devel", "kmodvm-dev2"} {
					if err := fx.lv.AddDomain(n, libvirt.DomainRunning); err != nil {
						fx.t.Fatal(err)
					}
				}
			},
			wantCalls: []string{"DomainUndefineFlags kmodvm-dev"},
			wantDoms:  []string{"dev", "kmodvm-dev2", "kmodvm-devel", "kmodvm-other"},
		},
		{
			name: "libvirt fails to undefine",
			vm:   "dev",
			setup: func(fx *fixture) {
				fx.define(fx.instance("dev", freePort(fx.t)))
				fx.lv.FailOn("DomainUndefineFlags", vmtest.Error(libvirt.ErrOperationFailed, "operation failed: cannot remove nvram"))
			},
			wantErr:   []string{`undefine domain "kmodvm-dev"`, "cannot remove nvram"},
			wantCalls: []string{"DomainUndefineFlags kmodvm-dev"},
			wantDoms:  []string{"kmodvm-dev"},
			wantState: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			if tt.setup != nil {
				tt.setup(fx)
			}
			fx.lv.ResetCalls()
			err := fx.sb.Destroy(testContext(t), tt.vm)
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr...)
				if strings.Contains(err.Error(), "leaves it alone") && remedy.Find(err) != nil {
					t.Errorf("refusing another owner's domain suggests %v", remedy.Find(err).Do)
				}
			} else if err != nil {
				t.Fatalf("Destroy: %v", err)
			}
			if got := fx.lv.Calls("DomainDestroy", "DomainUndefineFlags"); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", got, tt.wantCalls)
			}
			for _, c := range fx.lv.Calls() {
				if name := c[strings.Index(c, " ")+1:]; name != legacyDomainName(tt.vm) && name != DomainName(testUser.UID, tt.vm) {
					t.Errorf("libvirt call %q is about another domain than VM %s's", c, tt.vm)
				}
			}
			if got := fx.lv.Domains(); !slices.Equal(got, tt.wantDoms) {
				t.Errorf("domains left = %q, want %q", got, tt.wantDoms)
			}
			if got := exists(filepath.Join(vmsDir(fx.opt.State), tt.vm)); got != tt.wantState {
				t.Errorf("state dir exists = %v, want %v", got, tt.wantState)
			}
			if tt.name == "other domains are not touched" {
				if !exists(filepath.Join(vmsDir(fx.opt.State), "other", "instance.json")) {
					t.Error("the state of VM other is gone")
				}
				if got := fx.lv.Running(); !slices.Equal(got, tt.wantDoms) {
					t.Errorf("running = %q, want %q", got, tt.wantDoms)
				}
			}
		})
	}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name        string
		setup       func(fx *fixture)
		wantErr     []string
		wantState   vm.State
		wantProblem string // "" = no problem
		wantUptime  bool
	}{
		{
			name:    "no such VM",
			wantErr: []string{`there is no VM named "dev"`, "remedy: CreateVM"},
		},
		{
			name:        "state dir gone, domain there",
			setup:       func(fx *fixture) { fx.owned("kmodvm-1000-dev", fx.ours("dev"), libvirt.DomainRunning) },
			wantState:   vm.StateRunning,
			wantProblem: "libvirt has domain kmodvm-1000-dev but its state directory is gone; remedy: RemoveVM",
		},
		{
			name: "another user's domain, no state",
			setup: func(fx *fixture) {
				fx.owned("kmodvm-1000-dev", vm.Owner{UID: 0, User: "root", VM: "dev"}, libvirt.DomainRunning)
			},
			wantErr: []string{"belongs to uid 0 (root)"},
		},
		{
			name: "our state, another user's domain",
			setup: func(fx *fixture) {
				in := fx.instance("dev", freePort(fx.t))
				in.Domain = DomainName(testUser.UID, "dev")
				if err := in.save(); err != nil {
					fx.t.Fatal(err)
				}
				fx.owned("kmodvm-1000-dev", vm.Owner{UID: 0, VM: "dev"}, libvirt.DomainRunning)
			},
			wantState:   vm.StateUnknown,
			wantProblem: `VM "dev": libvirt domain kmodvm-1000-dev belongs to uid 0 (root)`,
		},
		{
			name:        "domain gone, state there",
			setup:       func(fx *fixture) { fx.instance("dev", freePort(fx.t)) },
			wantState:   vm.StateMissing,
			wantProblem: "the state directory exists but libvirt has no domain kmodvm-dev; remedy: StartVM",
		},
		{
			name:      "stopped",
			setup:     func(fx *fixture) { fx.define(fx.instance("dev", freePort(fx.t))) },
			wantState: vm.StateShutoff,
		},
		{
			name: "running, uptime over SSH",
			setup: func(fx *fixture) {
				fx.instance("dev", fx.sshPort())
				fx.running("dev")
			},
			wantState:  vm.StateRunning,
			wantUptime: true,
		},
		{
			name: "running, SSH not answering",
			setup: func(fx *fixture) {
				fx.instance("dev", freePort(fx.t))
				fx.running("dev")
			},
			wantState:   vm.StateRunning,
			wantProblem: "SSH is not answering: ",
		},
		{
			name: "libvirt fails",
			setup: func(fx *fixture) {
				fx.instance("dev", freePort(fx.t))
				fx.lv.FailOn(vmtest.AnyMethod, vmtest.Error(libvirt.ErrRPC, "connection lost"))
			},
			wantErr: []string{`domain "kmodvm-dev"`, "connection lost"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			if tt.setup != nil {
				tt.setup(fx)
			}
			st, err := fx.sb.Status(testContext(t), "dev")
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr...)
				return
			}
			if err != nil {
				t.Fatalf("Status: %v", err)
			}
			if st.Name != "dev" || st.State != string(tt.wantState) || st.StateDir != filepath.Join(fx.opt.State, "vms", "dev") {
				t.Errorf("Status = %+v, want name dev, state %s, state dir under %s", st, tt.wantState, fx.opt.State)
			}
			problem := st.Problem
			if len(st.Fix) > 0 {
				problem += "; remedy: " + actions(st.Fix)
			}
			if tt.wantProblem == "" && problem != "" || !strings.HasPrefix(problem, tt.wantProblem) {
				t.Errorf("Problem = %q, want %q", problem, tt.wantProblem)
			}
			if gotUptime := st.UptimeSeconds > 0 && st.Uptime != ""; gotUptime != tt.wantUptime {
				t.Errorf("uptime = %q (%v s), want one: %v", st.Uptime, st.UptimeSeconds, tt.wantUptime)
			}
			if tt.wantUptime && !slices.Contains(fx.srv.Execs(), "cat /proc/uptime") {
				t.Errorf("SSH commands = %q, want cat /proc/uptime", fx.srv.Execs())
			}
			if exists(filepath.Join(st.StateDir, "instance.json")) &&
				(st.Accel != "tcg" || st.KernelRelease != "6.12.0-kmodvm" || st.ConfigHash != "c0ffee" || st.ConsoleLog != filepath.Join(st.StateDir, "console.log")) {
				t.Errorf("Status does not report the instance: %+v", st)
			}
		})
	}
}

func TestList(t *testing.T) {
	fx := newFixture(t)
	fx.define(fx.instance("b", freePort(t)))
	fx.instance("a", freePort(t))
	writeFile(t, filepath.Join(vmsDir(fx.opt.State), "Not-A-VM", "instance.json"), "{}")
	got, err := fx.sb.List(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range got {
		names = append(names, st.Name+"="+st.State)
	}
	if want := []string{"a=missing", "b=shutoff"}; !slices.Equal(names, want) {
		t.Errorf("List = %q, want %q", names, want)
	}
}

// up runs Up and checks the client it returns works.
func (fx *fixture) up(name string) (*Instance, *sshclient.Client) {
	fx.t.Helper()
	ctx := testContext(fx.t)
	in, c, err := fx.sb.Up(ctx, name)
	if err != nil {
		fx.t.Fatalf("Up: %v", err)
	}
	fx.t.Cleanup(func() { c.Close() })
	if out, err := c.Output(ctx, "echo ready"); err != nil || string(out) != "ready\n" {
		fx.t.Fatalf("the SSH client Up returned does not work: %q, %v", out, err)
	}
	return in, c
}

func TestUpExistingInstance(t *testing.T) {
	tests := []struct {
		name       string
		defined    bool // the domain is defined (stopped)
		busy       bool // something else holds the saved port
		wantDefine int  // DomainDefineXML calls by Up
	}{
		{"domain missing", false, false, 1},
		{"domain stopped", true, false, 1},
		{"saved port busy", true, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			port := freePort(t)
			if tt.busy {
				port = busyPort(t)
			}
			in0 := fx.instance("dev", port)
			if tt.defined {
				fx.define(in0)
			}
			definedBefore := len(fx.lv.Defined())

			in, _ := fx.up("dev")

			sent := fx.lv.Defined()[definedBefore:]
			if len(sent) != tt.wantDefine {
				t.Fatalf("Up defined the domain %d times, want %d", len(sent), tt.wantDefine)
			}
			x := sent[len(sent)-1]
			gotPort := xmlPort(x)
			if tt.busy && (gotPort == port || gotPort == 0) {
				t.Errorf("the saved port %d is busy, yet the XML forwards port %d", port, gotPort)
			}
			if !tt.busy && gotPort != port {
				t.Errorf("the XML forwards port %d, want the saved %d", gotPort, port)
			}
			for _, w := range []string{in0.Overlay(), in0.Kernel, in0.ConsoleLog(), "<name>kmodvm-dev</name>", "<uuid>" + in0.UUID + "</uuid>"} {
				if !strings.Contains(x, w) {
					t.Errorf("the domain XML lacks %q:\n%s", w, x)
				}
			}
			if got := fx.lv.Calls("DomainCreate"); !slices.Equal(got, []string{"DomainCreate kmodvm-dev"}) {
				t.Errorf("DomainCreate calls = %q, want one", got)
			}
			if got := fx.lv.Running(); !slices.Equal(got, []string{"kmodvm-dev"}) {
				t.Errorf("running = %q", got)
			}
			saved, err := loadInstance(fx.opt.State, "dev")
			if err != nil {
				t.Fatal(err)
			}
			if saved.SSHPort != gotPort || in.SSHPort != gotPort {
				t.Errorf("saved port %d, returned %d, want the port of the XML %d", saved.SSHPort, in.SSHPort, gotPort)
			}
			if saved.UUID != in0.UUID || saved.FixedPort {
				t.Errorf("instance.json changed beyond the port: %+v", saved)
			}
			wantStatus := fmt.Sprintf("booting dev (tcg, kernel 6.12.0-kmodvm, ssh on 127.0.0.1:%d)", gotPort)
			if !slices.Contains(fx.statusLines(), wantStatus) {
				t.Errorf("status lines %q lack %q", fx.statusLines(), wantStatus)
			}
		})
	}
}

func TestUpRunningInstance(t *testing.T) {
	fx := newFixture(t)
	fx.instance("dev", fx.sshPort())
	fx.running("dev")
	fx.up("dev")
	if got := fx.lv.Calls("DomainDefineXML", "DomainCreate", "DomainDestroy"); len(got) != 0 {
		t.Errorf("Up of a running VM called %q, want only state queries", got)
	}
}

func TestUpErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(fx *fixture)
		wantErr []string
		// the state dir is expected to stay as it was (true) or not to exist (false)
		wantState bool
		wantDoms  []string
	}{
		{
			name: "fixed port busy",
			setup: func(fx *fixture) {
				in := fx.instance("dev", busyPort(fx.t))
				in.FixedPort = true
				if err := in.save(); err != nil {
					fx.t.Fatal(err)
				}
			},
			wantErr:   []string{"is already in use", `VM "dev"`, "hint: set vm.port in kmodvm.yaml"},
			wantState: true,
		},
		{
			name:     "name in use by a domain kmodvm has no state for",
			setup:    func(fx *fixture) { fx.owned("kmodvm-1000-dev", fx.ours("dev"), libvirt.DomainRunning) },
			wantErr:  []string{`the name "dev" is in use`, "kmodvm-1000-dev (running)", "remedy: RemoveVM, PickName"},
			wantDoms: []string{"kmodvm-1000-dev"},
		},
		{
			name: "name taken by another user's domain",
			setup: func(fx *fixture) {
				fx.owned("kmodvm-1000-dev", vm.Owner{UID: 1001, VM: "dev"}, libvirt.DomainRunning)
			},
			wantErr:  []string{"kmodvm-1000-dev belongs to uid 1001, not to you (uid 1000)"},
			wantDoms: []string{"kmodvm-1000-dev"},
		},
		{
			name: "kernel gone from the cache",
			setup: func(fx *fixture) {
				fx.instance("dev", freePort(fx.t))
				if err := os.Remove(fx.cache.kernel); err != nil {
					fx.t.Fatal(err)
				}
			},
			wantErr:   []string{`VM "dev" needs ` + "", "gone from the cache", "remedy: RecreateVM"},
			wantState: true,
		},
		{
			name:    "invalid name",
			wantErr: []string{"is not valid"},
		},

		{
			name: "libvirt fails to start the domain",
			setup: func(fx *fixture) {
				fx.instance("dev", freePort(fx.t))
				fx.lv.FailOn("DomainCreate", vmtest.Error(libvirt.ErrInternalError, "internal error: qemu unexpectedly closed the monitor"))
			},
			wantErr:   []string{`start VM "dev"`, "qemu unexpectedly closed the monitor", "hint: see ", "console.log"},
			wantState: true,
			wantDoms:  []string{"kmodvm-dev"},
		},
		{
			name: "guest panics before SSH is up",
			setup: func(fx *fixture) {
				in := fx.instance("dev", freePort(fx.t))
				writeFile(fx.t, in.ConsoleLog(), "Linux version 6.12.0\r\nKernel panic - not syncing: VFS: Unable to mount root fs\r\n")
				// The guest stops (panic=-1) as soon as it runs.
				fx.lv.OnCall("DomainGetState", func(name string) {
					if slices.Contains(fx.lv.Running(), name) {
						_ = fx.lv.StopByItself(name)
					}
				})
			},
			wantErr: []string{`VM "dev" did not become ready`, "the guest stopped (shutoff) before SSH came up",
				"  Kernel panic - not syncing: VFS: Unable to mount root fs", "hint: full console log in "},
			wantState: true,
			wantDoms:  []string{"kmodvm-dev"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			if tt.setup != nil {
				tt.setup(fx)
			}
			name := "dev"
			if tt.name == "invalid name" {
				name = "Dev"
			}
			in, c, err := fx.sb.Up(testContext(t), name)
			if c != nil {
				c.Close()
			}
			if in != nil {
				t.Errorf("Up returned an instance along with the error")
			}
			wantErr(t, err, tt.wantErr...)
			if got := exists(filepath.Join(vmsDir(fx.opt.State), name, "instance.json")); got != tt.wantState {
				t.Errorf("instance.json exists = %v, want %v", got, tt.wantState)
			}
			if got := fx.lv.Domains(); !slices.Equal(got, tt.wantDoms) {
				t.Errorf("domains = %q, want %q", got, tt.wantDoms)
			}
		})
	}
}

// poweroffCmd is what Down runs in the guest; sshtest runs commands on this host.
const poweroffCmd = images.GuestPoweroff

func TestDown(t *testing.T) {
	if exists(poweroffCmd) {
		t.Skipf("%s exists on this host and the test SSH server runs commands locally", poweroffCmd)
	}
	tests := []struct {
		name        string
		setup       func(fx *fixture)
		timeout     time.Duration
		wantErr     []string
		wantExecs   []string
		wantDestroy bool
		wantStatus  string
		wantStopped Stopped
	}{
		{
			name: "guest powers off",
			setup: func(fx *fixture) {
				fx.instance("dev", fx.sshPort())
				fx.running("dev")
				// The guest stops once it got the poweroff command.
				fx.lv.OnCall("DomainGetState", func(name string) {
					if slices.Contains(fx.srv.Execs(), poweroffCmd) && slices.Contains(fx.lv.Running(), name) {
						_ = fx.lv.StopByItself(name)
					}
				})
			},
			timeout:     testTimeout,
			wantExecs:   []string{poweroffCmd},
			wantStopped: StoppedShutdown,
		},
		{
			name: "guest ignores poweroff",
			setup: func(fx *fixture) {
				fx.instance("dev", fx.sshPort())
				fx.running("dev")
			},
			timeout:     300 * time.Millisecond,
			wantExecs:   []string{poweroffCmd},
			wantDestroy: true,
			wantStatus:  "dev did not stop within 300ms; stopping it hard",
			wantStopped: StoppedHard,
		},
		{
			name: "SSH down: hard stop after the timeout",
			setup: func(fx *fixture) {
				fx.instance("dev", freePort(fx.t))
				fx.running("dev")
			},
			timeout:     300 * time.Millisecond,
			wantDestroy: true,
			wantStopped: StoppedHard,
		},
		{
			name:        "already stopped",
			setup:       func(fx *fixture) { fx.define(fx.instance("dev", fx.sshPort())) },
			timeout:     time.Hour,
			wantStopped: StoppedNotRunning,
		},
		{
			name:    "no such VM",
			timeout: time.Hour,
			wantErr: []string{`there is no VM named "dev"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			// These are the ways down goes when it does not save (TestDownSaves).
			fx.lv.FailOn("DomainSaveFlags", vmtest.Error(libvirt.ErrOperationFailed, "operation failed: no space"))
			if tt.setup != nil {
				tt.setup(fx)
			}
			stopped, err := fx.sb.Down(testContext(t), "dev", tt.timeout)
			if stopped != tt.wantStopped {
				t.Errorf("Down says the VM was stopped %q, want %q", stopped, tt.wantStopped)
			}
			if tt.wantErr != nil {
				wantErr(t, err, tt.wantErr...)
			} else if err != nil {
				t.Fatalf("Down: %v", err)
			}
			if got := fx.srv.Execs(); !slices.Equal(got, tt.wantExecs) {
				t.Errorf("SSH commands = %q, want %q", got, tt.wantExecs)
			}
			if got := len(fx.lv.Calls("DomainDestroy")) == 1; got != tt.wantDestroy {
				t.Errorf("DomainDestroy calls = %q, want a hard stop: %v", fx.lv.Calls("DomainDestroy"), tt.wantDestroy)
			}
			if got := fx.lv.Running(); len(got) != 0 {
				t.Errorf("still running: %q", got)
			}
			if tt.wantStatus != "" && !slices.Contains(fx.statusLines(), tt.wantStatus) {
				t.Errorf("status lines %q lack %q", fx.statusLines(), tt.wantStatus)
			}
		})
	}
}

func TestGuestRestartAndRunning(t *testing.T) {
	fx := newFixture(t)
	ctx := testContext(t)
	fx.instance("dev", freePort(t))
	in, _ := fx.up("dev")

	g, err := fx.sb.Guest(ctx, "dev")
	if err != nil {
		t.Fatalf("Guest: %v", err)
	}
	defer g.Close()
	if g.Instance().SSHPort != in.SSHPort || g.ConsoleLog() != in.ConsoleLog() {
		t.Errorf("Guest instance = %+v, want the one Up returned", g.Instance())
	}
	if ok, err := g.Running(ctx); !ok || err != nil {
		t.Fatalf("Running = %v, %v; want true", ok, err)
	}

	old := g.SSH()
	if how, err := g.Restart(ctx); err != nil || how != "rebooted" {
		t.Fatalf("Restart: %v", err)
	}
	if g.SSH() == old {
		t.Error("Restart kept the old SSH client")
	}
	if out, err := g.SSH().Output(ctx, "echo back"); err != nil || string(out) != "back\n" {
		t.Errorf("SSH after Restart: %q, %v", out, err)
	}
	if got := fx.lv.Calls("DomainDestroy", "DomainCreate"); !slices.Equal(got, []string{"DomainCreate kmodvm-dev", "DomainDestroy kmodvm-dev", "DomainCreate kmodvm-dev"}) {
		t.Errorf("calls = %q, want create, destroy, create", got)
	}
	if ok, err := g.Running(ctx); !ok || err != nil {
		t.Errorf("Running after Restart = %v, %v; want true", ok, err)
	}

	// The guest panics: the domain stops by itself.
	if err := fx.lv.StopByItself("kmodvm-dev"); err != nil {
		t.Fatal(err)
	}
	if ok, err := g.Running(ctx); ok || err != nil {
		t.Errorf("Running after the guest stopped = %v, %v; want false", ok, err)
	}

	fx.lv.FailOn("DomainGetState", vmtest.Error(libvirt.ErrRPC, "connection lost"))
	if _, err := g.Running(ctx); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Errorf("Running with libvirt failing: error %v, want the libvirt error", err)
	}
}

// TestGuestHostKeySwapped: when the guest's key no longer matches the pinned one, Guest
// refuses it before any command, with a hint naming this VM; with the pinned key restored
// it works again.
func TestGuestHostKeySwapped(t *testing.T) {
	fx := newFixture(t)
	ctx := testContext(t)
	fx.instance("dev", freePort(t))
	fx.up("dev")
	execs := len(fx.srv.Execs())

	pinned := readFile(t, fx.cache.hostPub)
	other := filepath.Join(t.TempDir(), "other")
	sshtest.NewKeyFiles(t, other)
	writeFile(t, fx.cache.hostPub, string(readFile(t, other+".pub")))
	_, err := fx.sb.Guest(ctx, "dev")
	var mismatch *sshclient.HostKeyMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("Guest with a swapped host key: %v, want a host key mismatch", err)
	}
	wantErr(t, err, "does not match the pinned key", fx.cache.hostPub, "remedy: RecreateVM")
	if n := len(fx.srv.Execs()); n != execs {
		t.Errorf("%d commands ran on the guest with the wrong key", n-execs)
	}

	writeFile(t, fx.cache.hostPub, string(pinned))
	g, err := fx.sb.Guest(ctx, "dev")
	if err != nil {
		t.Fatalf("Guest with the pinned key restored: %v", err)
	}
	defer g.Close()
	if out, err := g.SSH().Output(ctx, "echo back"); err != nil || string(out) != "back\n" {
		t.Errorf("command after the key was restored: %q, %v", out, err)
	}
}

// TestStateFilesOwnerOnly: what Up writes into a VM's state dir is readable by its owner only.
func TestStateFilesOwnerOnly(t *testing.T) {
	fx := newFixture(t)
	in := fx.instance("dev", freePort(t))
	if err := os.Chmod(filepath.Join(in.Dir(), "instance.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	fx.up("dev") // saves instance.json again and takes the lock
	for _, name := range []string{"instance.json", "lock"} {
		fi, err := os.Stat(filepath.Join(in.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
}

// TestGuestSlowBanner: a running guest whose sshd is too slow for one banner probe (a loaded
// host) is still reached: Guest keeps probing instead of failing on the first try.
func TestGuestSlowBanner(t *testing.T) {
	fx := newFixture(t)
	ctx := testContext(t)
	fx.instance("dev", freePort(t))
	fx.up("dev")
	release := fx.srv.HoldBanner()
	before := fx.srv.Accepted()
	type result struct {
		g   *Guest
		err error
	}
	done := make(chan result, 1)
	go func() {
		g, err := fx.sb.Guest(ctx, "dev")
		done <- result{g, err}
	}()
	// A second connection means the first probe gave up on the banner.
	if err := fx.srv.WaitAccepted(ctx, before+2); err != nil {
		t.Fatalf("no second probe: %v", err)
	}
	release()
	r := <-done
	if r.err != nil {
		t.Fatalf("Guest with a slow banner: %v", r.err)
	}
	defer r.g.Close()
	if out, err := r.g.SSH().Output(ctx, "echo late"); err != nil || string(out) != "late\n" {
		t.Errorf("command after a slow banner: %q, %v", out, err)
	}
}

func TestGuestNotRunning(t *testing.T) {
	fx := newFixture(t)
	fx.define(fx.instance("dev", freePort(t)))
	_, err := fx.sb.Guest(testContext(t), "dev")
	wantErr(t, err, `VM "dev" is shutoff`, "remedy: StartVM")
}

func TestProbeKVMCache(t *testing.T) {
	if _, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err != nil {
		t.Skipf("no boot id, so the probe is never cached: %v", err)
	}
	state := t.TempDir()
	qemu := writeFile(t, filepath.Join(t.TempDir(), "qemu-system-x86_64"), "#!/bin/sh\nexit 1\n")
	if err := os.Chmod(qemu, 0o755); err != nil {
		t.Fatal(err)
	}
	var probes []vm.AccelProbe
	answer := struct {
		ok     bool
		detail string
		err    error
	}{true, "KVM works", nil}
	probe := func(_ context.Context, p vm.AccelProbe) (bool, string, error) {
		probes = append(probes, p)
		return answer.ok, answer.detail, answer.err
	}
	newSB := func() *Sandbox { return New(vmtest.NewLibvirt(), Options{State: state, QEMU: qemu, ProbeKVM: probe}) }
	ctx := testContext(t)
	check := func(what string, sb *Sandbox, wantOK bool, wantDetail string, wantProbes int) {
		t.Helper()
		ok, detail, err := sb.probeKVM(ctx, "/k/bzImage")
		if err != nil {
			t.Fatalf("%s: probeKVM: %v", what, err)
		}
		if ok != wantOK || detail != wantDetail {
			t.Errorf("%s: probeKVM = %v, %q; want %v, %q", what, ok, detail, wantOK, wantDetail)
		}
		if len(probes) != wantProbes {
			t.Errorf("%s: the probe ran %d times in all, want %d", what, len(probes), wantProbes)
		}
	}

	sb := newSB()
	check("first call", sb, true, "KVM works", 1)
	if probes[0] != (vm.AccelProbe{QEMU: qemu, Kernel: "/k/bzImage"}) {
		t.Errorf("probe got %+v, want the QEMU and kernel", probes[0])
	}
	answer.ok, answer.detail = false, "changed answer"
	check("second call", sb, true, "KVM works", 1)
	check("another Sandbox on the same state", newSB(), true, "KVM works", 1)

	later := time.Now().Add(time.Hour)
	if err := os.Chtimes(qemu, later, later); err != nil {
		t.Fatal(err)
	}
	check("QEMU changed", sb, false, "changed answer", 2)
	check("after re-probing", sb, false, "changed answer", 2)

	// A probe that fails is not remembered.
	if err := os.Remove(filepath.Join(state, "kvm-probe.json")); err != nil {
		t.Fatal(err)
	}
	answer.err = errors.New("cannot run qemu")
	for range 2 {
		if _, _, err := sb.probeKVM(ctx, "/k/bzImage"); err == nil || err.Error() != "cannot run qemu" {
			t.Errorf("probeKVM error = %v, want the probe's", err)
		}
	}
	if len(probes) != 4 {
		t.Errorf("a failed probe was cached: %d probes in all, want 4", len(probes))
	}
	if exists(filepath.Join(state, "kvm-probe.json")) {
		t.Error("a failed probe was written to kvm-probe.json")
	}
}

// Status says whether the VM runs the debug kernel: the one whose vmlinux up recorded.
func TestStatusKernelDebug(t *testing.T) {
	for _, vmlinux := range []string{"", "/cache/kernels/builds/k1/vmlinux"} {
		fx := newFixture(t)
		in := fx.instance("dev", freePort(t))
		in.Vmlinux = vmlinux
		if err := in.save(); err != nil {
			t.Fatal(err)
		}
		st, err := fx.sb.Status(testContext(t), "dev")
		if err != nil {
			t.Fatal(err)
		}
		if st.KernelDebug != (vmlinux != "") {
			t.Errorf("vmlinux %q: KernelDebug = %v", vmlinux, st.KernelDebug)
		}
	}
}

// TestRunning: a VM runs when its state exists and its domain runs; one that does not exist,
// or whose domain is stopped or gone, does not; a domain of its name that is someone
// else's is an error.
func TestRunning(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(fx *fixture)
		want    bool
		wantErr string
	}{
		{name: "no such VM", setup: func(*fixture) {}},
		{name: "state, no domain", setup: func(fx *fixture) { fx.instance("dev", freePort(t)) }},
		{name: "stopped", setup: func(fx *fixture) { fx.define(fx.instance("dev", freePort(t))) }},
		{name: "running", want: true, setup: func(fx *fixture) {
			fx.instance("dev", fx.sshPort())
			fx.running("dev")
		}},
		{name: "someone else's domain", wantErr: "not to you", setup: func(fx *fixture) {
			in := fx.instance("dev", freePort(t))
			o := fx.ours("dev")
			o.UID, o.User = 0, "root"
			fx.owned(in.DomainName(), o, libvirt.DomainRunning)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t)
			tt.setup(fx)
			got, err := fx.sb.Running(testContext(t), "dev")
			if tt.wantErr != "" {
				wantErr(t, err, tt.wantErr)
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("Running = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := newFixture(t).sb.Running(testContext(t), "Bad Name"); err == nil {
		t.Error("Running accepted a bad VM name")
	}
}
