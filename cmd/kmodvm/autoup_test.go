package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/sshclient"
	"github.com/kmodvm/kmodvm/vm/sshtest"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

// fakeStarter is a sandbox whose VM runs or not; its Up boots it: it returns a real SSH
// connection to an in-process server standing in for the guest, or err.
type fakeStarter struct {
	t       *testing.T
	running bool
	runErr  error
	upErr   error
	ups     []string // the VMs Up was asked for
	clients []*sshclient.Client
}

func (f *fakeStarter) Running(_ context.Context, name string) (bool, error) {
	return f.running, f.runErr
}

func (f *fakeStarter) Up(ctx context.Context, name string) (*sandbox.Instance, *sshclient.Client, error) {
	f.ups = append(f.ups, name)
	if f.upErr != nil {
		return nil, nil, f.upErr
	}
	host, user := sshtest.NewKey(f.t), sshtest.NewKey(f.t)
	srv := sshtest.NewServer(f.t, host, user.PublicKey())
	c, err := sshclient.Dial(ctx, sshclient.Config{Addr: srv.Addr(), User: "root", Signer: user, HostKey: host.PublicKey()})
	if err != nil {
		f.t.Fatal(err)
	}
	f.clients = append(f.clients, c)
	f.running = true
	return &sandbox.Instance{Name: name, Accel: vm.AccelTCG, KernelRelease: "7.2.13-kmodvm-1a2b3c4d", SSHPort: 2222}, c, nil
}

// TestStartIfDown: a run starts a VM that is not running as `up` does (the same progress,
// the connection Up opened closed again), leaves a running one alone, and passes on what
// went wrong in either step.
func TestStartIfDown(t *testing.T) {
	refused := remedy.With(errors.New(`VM "dev" needs /cache/bzImage, which is gone from the cache`), "dev", remedy.RecreateVM)
	tests := []struct {
		name     string
		running  bool
		runErr   error
		upErr    error
		wantUp   bool
		wantErr  error
		progress []string
	}{
		{name: "running", running: true},
		{name: "not running", wantUp: true, progress: []string{
			"==> VM dev is not running: starting it as `kmodvm up` does (--no-up fails instead)",
			"==> dev is up in ",
		}},
		{name: "libvirt fails", runErr: errLibvirt, wantErr: errLibvirt},
		{name: "up fails", upErr: refused, wantUp: true, wantErr: refused, progress: []string{
			"==> VM dev is not running: starting it as `kmodvm up` does (--no-up fails instead)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			a := &app{prog: newProgress(&stderr)}
			a.cfg.Name = "dev"
			f := &fakeStarter{t: t, running: tt.running, runErr: tt.runErr, upErr: tt.upErr}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := a.startIfDown(ctx, f)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("startIfDown = %v, want %v", err, tt.wantErr)
			}
			if wantUps := map[bool][]string{true: {"dev"}}[tt.wantUp]; !slices.Equal(f.ups, wantUps) {
				t.Errorf("Up called for %v, want %v", f.ups, wantUps)
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if stderr.Len() == 0 {
				lines = nil
			}
			if len(lines) != len(tt.progress) {
				t.Fatalf("progress %q, want %q", lines, tt.progress)
			}
			for i, want := range tt.progress {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("progress line %d: %q, want %q...", i, lines[i], want)
				}
			}
			for _, c := range f.clients {
				if _, err := c.Output(ctx, "true"); err == nil {
					t.Error("the SSH connection Up opened is still open")
				}
			}
		})
	}
}

var errLibvirt = errors.New("libvirt: connection reset")

// TestRunStartsTheVM: run, test and watch start a VM that is not running through `up`'s own
// path (sandbox.Up), and with --no-up fail as before, without starting it. libvirt is a fake;
// the VM's state points at a kernel no longer in the cache, so Up stops with its own error
// before anything boots.
func TestRunStartsTheVM(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		instance bool // the VM's state exists (stopped; its domain is gone)
		code     int
		stderr   []string
		absent   []string
	}{
		{name: "run starts it", args: []string{"run"}, instance: true, code: exitFailure,
			stderr: []string{"==> VM dev is not running: starting it as `kmodvm up` does", `VM "dev" needs /nonexistent/bzImage, which is gone from the cache`, "hint: `kmodvm destroy -n dev && kmodvm up -n dev` recreates it"}},
		{name: "test starts it", args: []string{"test"}, instance: true, code: exitFailure,
			stderr: []string{"==> VM dev is not running: starting it", "gone from the cache"}},
		{name: "watch starts it", args: []string{"watch"}, instance: true, code: exitFailure,
			stderr: []string{"==> VM dev is not running: starting it", "gone from the cache"}},
		{name: "run --no-up", args: []string{"run", "--no-up"}, code: exitFailure,
			stderr: []string{`there is no VM named "dev"; hint: ` + "`kmodvm up -n dev` creates it"}, absent: []string{"starting it"}},
		{name: "test --no-up", args: []string{"test", "--no-up"}, code: exitFailure,
			stderr: []string{`there is no VM named "dev"`}, absent: []string{"starting it"}},
		{name: "watch --no-up", args: []string{"watch", "--no-up"}, code: exitFailure,
			stderr: []string{`there is no VM named "dev"`}, absent: []string{"starting it"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			wd := t.TempDir()
			writeFiles(t, wd, map[string]string{"m/Kbuild": helloKbuild, "m/hello.c": "int x;\n"})
			if tt.instance {
				writeFiles(t, filepath.Join(os.Getenv("KMODVM_HOME"), "state", "vms", "dev"), map[string]string{"instance.json": `{"name": "dev", "accel": "tcg",
					"kernel": "/nonexistent/bzImage", "base": "/nonexistent/base.qcow2", "kernel_release": "7.2.13-kmodvm-1a2b3c4d"}`})
			}
			lv := vmtest.NewLibvirt()
			t.Chdir(wd)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			args := append(append(slices.Clone(tt.args), "-n", "dev"), "m")
			code := runApp(ctx, args, strings.NewReader(""), &out, &errb, func(a *app) {
				a.libvirt = func(context.Context) (vm.Libvirt, error) { return lv, nil }
			})
			t.Logf("kmodvm %s -> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			for _, want := range tt.stderr {
				if !strings.Contains(errb.String(), want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			for _, bad := range tt.absent {
				if strings.Contains(errb.String(), bad) {
					t.Errorf("stderr has %q", bad)
				}
			}
			if got := lv.Calls("DomainDefineXML", "DomainCreate"); len(got) != 0 {
				t.Errorf("libvirt was asked to %q", got)
			}
		})
	}
}
