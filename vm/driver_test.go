package vm

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/digitalocean/go-libvirt"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

const testUUID = "5b0f8c3e-2f1a-4c6e-9d7b-3a1e2c4d5f60"

// The fake must stay a drop-in for a real connection.
var _ Libvirt = (*vmtest.Libvirt)(nil)

// readGolden returns a golden file from testdata/domain.
func readGolden(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "domain", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDriverLifecycle walks one domain through define, start, stop and undefine, checking the
// state after every step and that the XML libvirt received is the golden one.
func TestDriverLifecycle(t *testing.T) {
	ctx := context.Background()
	f := vmtest.NewLibvirt()
	d := NewDriver(f, nil)
	name := baseSpec().Name

	steps := []struct {
		what    string
		do      func() error
		wantErr string
		want    State
	}{
		{"state before define", func() error { return nil }, "", StateMissing},
		{"define", func() error { return d.Define(ctx, baseSpec()) }, "", StateShutoff},
		{"start", func() error { return d.Start(ctx, name) }, "", StateRunning},
		{"start again (a no-op: what a start repeated after a libvirtd restart sees)", func() error { return d.Start(ctx, name) }, "", StateRunning},
		{"redefine while running", func() error { return d.Define(ctx, baseSpec()) }, "", StateRunning},
		{"undefine while running", func() error { return d.Undefine(ctx, name) }, "stop it first", StateRunning},
		{"destroy", func() error { return d.Destroy(ctx, name) }, "", StateShutoff},
		{"destroy again", func() error { return d.Destroy(ctx, name) }, "", StateShutoff},
		{"undefine", func() error { return d.Undefine(ctx, name) }, "", StateMissing},
		{"undefine again", func() error { return d.Undefine(ctx, name) }, "", StateMissing},
		{"destroy missing", func() error { return d.Destroy(ctx, name) }, "", StateMissing},
		{"start missing", func() error { return d.Start(ctx, name) }, "not defined", StateMissing},
	}
	for _, s := range steps {
		err := s.do()
		switch {
		case s.wantErr == "" && err != nil:
			t.Fatalf("%s: %v", s.what, err)
		case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
			t.Fatalf("%s: error %v, want one containing %q", s.what, err, s.wantErr)
		case s.wantErr != "" && !strings.Contains(err.Error(), `"`+name+`"`):
			t.Errorf("%s: error %q does not name the domain", s.what, err)
		}
		got, err := d.State(ctx, name)
		if err != nil {
			t.Fatalf("%s: State: %v", s.what, err)
		}
		if got != s.want {
			t.Fatalf("after %s: state %s, want %s", s.what, got, s.want)
		}
	}

	want := readGolden(t, "tcg-direct-kernel.xml")
	if len(f.Defined()) != 2 {
		t.Fatalf("libvirt got %d definitions, want 2", len(f.Defined()))
	}
	for i, x := range f.Defined() {
		if x != want {
			t.Errorf("definition %d differs from testdata/domain/tcg-direct-kernel.xml:\n%s", i, x)
		}
	}
	if got := f.Calls("DomainDestroy"); len(got) != 1 {
		t.Errorf("DomainDestroy calls = %q, want exactly one (a stopped domain must not be destroyed)", got)
	}
}

func TestDriverDefine(t *testing.T) {
	otherUUID := "11111111-2222-4333-8444-555555555555"
	tests := []struct {
		name      string
		setup     func(t *testing.T, f *vmtest.Libvirt, d *Driver)
		spec      func() DomainSpec
		wantErr   string
		wantCalls []string // DomainDefineXML / DomainUndefineFlags calls, in order
		wantUUID  string   // UUID the domain has afterwards ("" = don't check)
		golden    string   // the last XML sent must equal this golden ("" = don't check)
	}{
		{
			name:      "new domain",
			spec:      baseSpec,
			wantCalls: []string{"DomainDefineXML kmodvm-dev"},
			wantUUID:  testUUID,
			golden:    "tcg-direct-kernel.xml",
		},
		{
			name:  "redefine with same UUID updates in place",
			setup: defineBase,
			spec: func() DomainSpec {
				s := baseSpec()
				s.Initrd = "/var/lib/kmodvm/kernels/abc123/initrd.img"
				s.Cmdline = "console=ttyS0 root=/dev/vda rw panic=-1 quiet"
				return s
			},
			wantCalls: []string{"DomainDefineXML kmodvm-dev", "DomainDefineXML kmodvm-dev"},
			wantUUID:  testUUID,
			golden:    "tcg-initrd.xml",
		},
		{
			name:  "empty UUID adopts the existing one",
			setup: defineBase,
			spec: func() DomainSpec {
				s := baseSpec()
				s.UUID = ""
				return s
			},
			wantCalls: []string{"DomainDefineXML kmodvm-dev", "DomainDefineXML kmodvm-dev"},
			wantUUID:  testUUID,
			golden:    "tcg-direct-kernel.xml",
		},
		{
			name:  "other UUID replaces a stopped domain",
			setup: defineBase,
			spec: func() DomainSpec {
				s := baseSpec()
				s.UUID = otherUUID
				return s
			},
			wantCalls: []string{"DomainDefineXML kmodvm-dev", "DomainUndefineFlags kmodvm-dev", "DomainDefineXML kmodvm-dev"},
			wantUUID:  otherUUID,
		},
		{
			name: "other UUID does not replace a running domain",
			setup: func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
				defineBase(t, f, d)
				if err := d.Start(context.Background(), "kmodvm-dev"); err != nil {
					t.Fatal(err)
				}
			},
			spec: func() DomainSpec {
				s := baseSpec()
				s.UUID = otherUUID
				return s
			},
			wantErr:   "another UUID",
			wantCalls: []string{"DomainDefineXML kmodvm-dev"},
			wantUUID:  testUUID,
		},
		{
			name: "libvirt rejects the XML",
			setup: func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
				f.FailOn("DomainDefineXML", vmtest.Error(libvirt.ErrXMLError, "XML error: bad thing"))
			},
			spec:      baseSpec,
			wantErr:   "libvirt rejected the domain XML: XML error: bad thing",
			wantCalls: []string{"DomainDefineXML kmodvm-dev"},
		},
		{
			name: "lookup fails",
			setup: func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
				f.FailOn("DomainLookupByName", vmtest.Error(libvirt.ErrInternalError, "internal error: connection lost"))
			},
			spec:    baseSpec,
			wantErr: "connection lost",
		},
		{
			name: "invalid spec never reaches libvirt",
			spec: func() DomainSpec {
				s := baseSpec()
				s.Accel = AccelAuto
				return s
			},
			wantErr: "not resolved",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			d := NewDriver(f, nil)
			if tt.setup != nil {
				tt.setup(t, f, d)
			}
			err := d.Define(context.Background(), tt.spec())
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Define: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Define error = %v, want one containing %q", err, tt.wantErr)
			}
			if got := f.Calls("DomainDefineXML", "DomainUndefineFlags"); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", got, tt.wantCalls)
			}
			if tt.wantUUID != "" {
				dom, ok := f.Domain("kmodvm-dev")
				if !ok {
					t.Fatal("domain is not defined")
				}
				if dom.UUID != tt.wantUUID {
					t.Errorf("domain UUID = %s, want %s", dom.UUID, tt.wantUUID)
				}
			}
			if tt.golden != "" {
				if got, want := f.Defined()[len(f.Defined())-1], readGolden(t, tt.golden); got != want {
					t.Errorf("XML sent differs from testdata/domain/%s:\n%s", tt.golden, got)
				}
			}
		})
	}
}

func defineBase(t *testing.T, f *vmtest.Libvirt, d *Driver) {
	t.Helper()
	if err := d.Define(context.Background(), baseSpec()); err != nil {
		t.Fatal(err)
	}
}

func startBase(t *testing.T, f *vmtest.Libvirt, d *Driver) {
	t.Helper()
	defineBase(t, f, d)
	if err := d.Start(context.Background(), "kmodvm-dev"); err != nil {
		t.Fatal(err)
	}
}

func TestDriverStartErrors(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, f *vmtest.Libvirt, d *Driver)
		wantErr []string
	}{
		{"not defined", nil, []string{`start domain "kmodvm-dev"`, "not defined"}},
		{"virtlogd down", func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
			defineBase(t, f, d)
			f.FailOn("DomainCreate", vmtest.Error(libvirt.ErrSystemError, "Failed to connect socket to '/run/libvirt/virtlogd-sock': No such file or directory"))
		}, []string{`start domain "kmodvm-dev"`, "virtlogd-sock", "hint: virtlogd is not running: start it with 'virtlogd -d'"}},
		{"qemu fails", func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
			defineBase(t, f, d)
			f.FailOn("DomainCreate", vmtest.Error(libvirt.ErrInternalError, "internal error: qemu unexpectedly closed the monitor: could not open kernel file"))
		}, []string{`start domain "kmodvm-dev"`, "could not open kernel file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			d := NewDriver(f, nil)
			if tt.setup != nil {
				tt.setup(t, f, d)
			}
			err := d.Start(context.Background(), "kmodvm-dev")
			if err == nil {
				t.Fatal("Start: no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Start error %q lacks %q", err, w)
				}
			}
		})
	}
	t.Run("libvirt error stays inspectable", func(t *testing.T) {
		f := vmtest.NewLibvirt()
		d := NewDriver(f, nil)
		defineBase(t, f, d)
		f.FailOn("DomainCreate", vmtest.Error(libvirt.ErrInternalError, "boom"))
		var le libvirt.Error
		if err := d.Start(context.Background(), "kmodvm-dev"); !errors.As(err, &le) || le.Code != uint32(libvirt.ErrInternalError) {
			t.Errorf("Start error %v does not wrap the libvirt.Error", err)
		}
	})
}

func TestDriverState(t *testing.T) {
	tests := []struct {
		name       string
		setup      func(t *testing.T, f *vmtest.Libvirt, d *Driver)
		want       State
		wantReason string
		wantErr    string
	}{
		{"missing", nil, StateMissing, "", ""},
		{"defined", defineBase, StateShutoff, "unknown", ""},
		{"running", startBase, StateRunning, "booted", ""},
		{"destroyed", func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
			startBase(t, f, d)
			if err := d.Destroy(context.Background(), "kmodvm-dev"); err != nil {
				t.Fatal(err)
			}
		}, StateShutoff, "destroyed", ""},
		{"guest rebooted (panic=-1)", scripted(libvirt.DomainShutoff, int32(libvirt.DomainShutoffShutdown)), StateShutoff, "shutdown", ""},
		{"blocked counts as running", scripted(libvirt.DomainBlocked, 0), StateRunning, "unknown", ""},
		{"paused on I/O error", scripted(libvirt.DomainPaused, int32(libvirt.DomainPausedIoerror)), StatePaused, "ioerror", ""},
		{"crashed", scripted(libvirt.DomainCrashed, int32(libvirt.DomainCrashedPanicked)), StateCrashed, "panicked", ""},
		{"suspended", scripted(libvirt.DomainPmsuspended, 0), StateSuspended, "unknown", ""},
		{"unknown state number", scripted(libvirt.DomainState(42), 0), "", "", "unknown domain state 42"},
		{"get state fails", func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
			defineBase(t, f, d)
			f.FailOn("DomainGetState", vmtest.Error(libvirt.ErrInternalError, "internal error: no monitor"))
		}, "", "", `get state of domain "kmodvm-dev": internal error: no monitor`},
		{"undefined between lookup and state", func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
			defineBase(t, f, d)
			f.OnCall("DomainGetState", func(string) { f.Remove("kmodvm-dev") })
		}, StateMissing, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			d := NewDriver(f, nil)
			if tt.setup != nil {
				tt.setup(t, f, d)
			}
			got, reason, err := d.StateReason(context.Background(), "kmodvm-dev")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("StateReason error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("StateReason: %v", err)
			}
			if got != tt.want || reason != tt.wantReason {
				t.Errorf("StateReason = %s (%s), want %s (%s)", got, reason, tt.want, tt.wantReason)
			}
		})
	}
}

// scripted defines the base domain and makes the next DomainGetState report st/reason.
func scripted(st libvirt.DomainState, reason int32) func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
	return func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
		defineBase(t, f, d)
		f.ScriptStates("kmodvm-dev", vmtest.StateStep{State: st, Reason: reason})
	}
}

func TestDriverDestroyAndUndefine(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, f *vmtest.Libvirt, d *Driver)
		op        func(d *Driver) error
		wantErr   string
		wantCalls []string // DomainDestroy / DomainUndefineFlags calls
		want      State
	}{
		{"destroy running", startBase, destroyOp, "", []string{"DomainDestroy kmodvm-dev"}, StateShutoff},
		{"destroy stopped is a no-op", defineBase, destroyOp, "", nil, StateShutoff},
		{"destroy missing is a no-op", nil, destroyOp, "", nil, StateMissing},
		{"destroy races with guest exit", func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
			startBase(t, f, d)
			f.OnCall("DomainDestroy", func(string) { _ = f.SetState("kmodvm-dev", libvirt.DomainShutoff, 0) })
		}, destroyOp, "", []string{"DomainDestroy kmodvm-dev"}, StateShutoff},
		{"destroy fails", func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
			startBase(t, f, d)
			f.FailOn("DomainDestroy", vmtest.Error(libvirt.ErrSystemError, "Failed to terminate process 42 with SIGKILL: Device or resource busy"))
		}, destroyOp, `destroy domain "kmodvm-dev": Failed to terminate process`, []string{"DomainDestroy kmodvm-dev"}, StateRunning},
		{"undefine stopped", defineBase, undefineOp, "", []string{"DomainUndefineFlags kmodvm-dev"}, StateMissing},
		{"undefine missing is a no-op", nil, undefineOp, "", nil, StateMissing},
		{"undefine running is refused", startBase, undefineOp, "stop it first", nil, StateRunning},
		{"undefine fails", func(t *testing.T, f *vmtest.Libvirt, d *Driver) {
			defineBase(t, f, d)
			f.FailOn("DomainUndefineFlags", vmtest.Error(libvirt.ErrOperationFailed, "operation failed: cannot delete nvram"))
		}, undefineOp, `undefine domain "kmodvm-dev": operation failed`, []string{"DomainUndefineFlags kmodvm-dev"}, StateShutoff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			d := NewDriver(f, nil)
			if tt.setup != nil {
				tt.setup(t, f, d)
			}
			err := tt.op(d)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if got := f.Calls("DomainDestroy", "DomainUndefineFlags"); !slices.Equal(got, tt.wantCalls) {
				t.Errorf("calls = %q, want %q", got, tt.wantCalls)
			}
			f.FailOn("DomainGetState", nil)
			f.OnCall("DomainDestroy", nil)
			if got, err := d.State(context.Background(), "kmodvm-dev"); err != nil || got != tt.want {
				t.Errorf("state afterwards = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func destroyOp(d *Driver) error  { return d.Destroy(context.Background(), "kmodvm-dev") }
func undefineOp(d *Driver) error { return d.Undefine(context.Background(), "kmodvm-dev") }

func TestDriverWaitState(t *testing.T) {
	t.Run("reaches the state", func(t *testing.T) {
		f := vmtest.NewLibvirt()
		d := NewDriver(f, nil)
		defineBase(t, f, d)
		f.ScriptStates("kmodvm-dev",
			vmtest.StateStep{State: libvirt.DomainRunning, Reason: 1}, vmtest.StateStep{State: libvirt.DomainRunning, Reason: 1},
			vmtest.StateStep{State: libvirt.DomainShutoff, Reason: int32(libvirt.DomainShutoffShutdown)})
		if err := d.WaitState(context.Background(), "kmodvm-dev", StateShutoff, 1); err != nil {
			t.Fatalf("WaitState: %v", err)
		}
		if n := len(f.Calls("DomainGetState")); n != 3 {
			t.Errorf("polled %d times, want 3", n)
		}
	})
	t.Run("context ends first", func(t *testing.T) {
		f := vmtest.NewLibvirt()
		d := NewDriver(f, nil)
		startBase(t, f, d)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		polls := 0
		f.OnCall("DomainGetState", func(string) {
			if polls++; polls == 3 {
				cancel()
			}
		})
		err := d.WaitState(ctx, "kmodvm-dev", StateShutoff, 1)
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "still running") {
			t.Fatalf("WaitState error = %v, want context.Canceled naming the last state (running)", err)
		}
	})
	t.Run("waiting for missing after undefine", func(t *testing.T) {
		f := vmtest.NewLibvirt()
		d := NewDriver(f, nil)
		if err := d.WaitState(context.Background(), "kmodvm-dev", StateMissing, 0); err != nil {
			t.Fatalf("WaitState: %v", err)
		}
	})
	t.Run("libvirt error ends the wait", func(t *testing.T) {
		f := vmtest.NewLibvirt()
		d := NewDriver(f, nil)
		defineBase(t, f, d)
		f.FailOn("DomainGetState", vmtest.Error(libvirt.ErrInternalError, "internal error: gone"))
		err := d.WaitState(context.Background(), "kmodvm-dev", StateRunning, 1)
		if err == nil || !strings.Contains(err.Error(), "internal error: gone") {
			t.Fatalf("WaitState error = %v, want the libvirt error", err)
		}
	})
}

func TestDriverCanceledContext(t *testing.T) {
	f := vmtest.NewLibvirt()
	d := NewDriver(f, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ops := map[string]func() error{
		"Define":   func() error { return d.Define(ctx, baseSpec()) },
		"Start":    func() error { return d.Start(ctx, "kmodvm-dev") },
		"Destroy":  func() error { return d.Destroy(ctx, "kmodvm-dev") },
		"Undefine": func() error { return d.Undefine(ctx, "kmodvm-dev") },
		"State":    func() error { _, err := d.State(ctx, "kmodvm-dev"); return err },
	}
	for name, op := range ops {
		if err := op(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: error %v, want context.Canceled", name, err)
		}
	}
	if calls := f.Calls(); len(calls) != 0 {
		t.Errorf("libvirt was called with a canceled context: %q", calls)
	}
}

func TestConnectErrors(t *testing.T) {
	dir := t.TempDir()
	// A socket file nobody listens on: connection refused.
	refused := filepath.Join(dir, "refused-sock")
	ln, err := net.Listen("unix", refused)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()

	tests := []struct {
		name    string
		uri     string
		wantErr []string
	}{
		{"system socket missing", "qemu:///system?socket=" + filepath.Join(dir, "missing-sock"),
			[]string{"libvirtd is not running", "missing-sock", "hint: start it with 'libvirtd -d' and 'virtlogd -d' (or 'systemctl start libvirtd')"}},
		{"system connection refused", "qemu:///system?socket=" + refused,
			[]string{"libvirtd is not running", "hint: start it with 'libvirtd -d'"}},
		{"session socket missing", "qemu:///session?socket=" + filepath.Join(dir, "missing-sock"),
			[]string{"libvirtd is not running", "hint: start the per-user daemon"}},
		{"unsupported path", "qemu:///embed", []string{`unsupported URI "qemu:///embed"`}},
		{"bad URI", "qemu://%zz", []string{"bad URI"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Connect(context.Background(), tt.uri, nil)
			if err == nil {
				l.Disconnect()
				t.Fatal("Connect: no error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Connect error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestConnectReachesTheURI: Connect dials the socket the URI names and opens the URI's
// driver there, on a fake libvirtd the test controls (and no other daemon).
func TestConnectReachesTheURI(t *testing.T) {
	for _, driver := range []string{URISystem, URISession} {
		t.Run(driver, func(t *testing.T) {
			d := vmtest.NewDaemon(t)
			l, err := Connect(context.Background(), driver+"?socket="+d.Socket, nil)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			_ = l.Disconnect() // the fake hangs up on connect-close
			if got := d.Opened(); !slices.Equal(got, []string{driver}) {
				t.Errorf("the daemon on the URI's socket saw %q opened, want %q", got, driver)
			}
		})
	}
}

func TestSessionSocketPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	u, _ := url.Parse(URISession)
	sock, remote, _, err := localSocket(u)
	if err != nil || sock != "/run/user/1000/libvirt/libvirt-sock" || remote != libvirt.QEMUSession {
		t.Errorf("localSocket(session) = %q, %q, %v", sock, remote, err)
	}
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("HOME", "/home/dev")
	if sock, _, _, err := localSocket(u); err != nil || sock != "/home/dev/.cache/libvirt/libvirt-sock" {
		t.Errorf("localSocket(session) without XDG_RUNTIME_DIR = %q, %v", sock, err)
	}
	u, _ = url.Parse(URISystem)
	if sock, remote, _, err := localSocket(u); err != nil || sock != "/var/run/libvirt/libvirt-sock" || remote != libvirt.QEMUSystem {
		t.Errorf("localSocket(system) = %q, %q, %v", sock, remote, err)
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	tests := []struct {
		uri, sock string
		ok, err   bool
	}{
		{URISystem, "/var/run/libvirt/libvirt-sock", true, false},
		{URISession, "/run/user/1000/libvirt/libvirt-sock", true, false},
		{URISystem + "?socket=/tmp/s", "/tmp/s", true, false},
		{"qemu+ssh://root@host/system", "", false, false},
		{"qemu:///embed", "", false, true},
		{"%zz", "", false, true},
	}
	for _, tt := range tests {
		sock, ok, err := SocketPath(tt.uri)
		if sock != tt.sock || ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("SocketPath(%q) = %q, %v, %v; want %q, %v, error %v", tt.uri, sock, ok, err, tt.sock, tt.ok, tt.err)
		}
	}
}

func TestDriverClose(t *testing.T) {
	f := vmtest.NewLibvirt()
	if err := NewDriver(f, nil).Close(); err != nil {
		t.Fatal(err)
	}
	f.FailOn("Disconnect", errors.New("broken pipe"))
	if err := NewDriver(f, nil).Close(); err == nil || !strings.Contains(err.Error(), "disconnect from libvirt: broken pipe") {
		t.Errorf("Close error = %v", err)
	}
}
