package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/golden"
)

func TestDomainName(t *testing.T) {
	if got := DomainName(1000, "dev"); got != "kmodvm-1000-dev" {
		t.Errorf("DomainName = %q", got)
	}
	longest := DomainName(1<<32-1, strings.Repeat("a", 40))
	if err := CheckName(strings.Repeat("a", 40)); err != nil {
		t.Fatal(err)
	}
	spec := vm.DomainSpec{Name: longest, Accel: vm.AccelTCG, MemoryMiB: 512, CPUs: 1, Kernel: "/k", Disk: "/d", SSHPort: 22}
	if err := spec.Validate(); err != nil {
		t.Errorf("the longest domain name (%d chars) is not valid: %v", len(longest), err)
	}
}

// newInstance writes the state of VM name as a current `up` leaves it: the domain named for
// the fixture's user.
func (fx *fixture) newInstance(name string, port int) *Instance {
	fx.t.Helper()
	in := fx.instance(name, port)
	in.Domain = DomainName(fx.opt.User.UID, name)
	if err := in.save(); err != nil {
		fx.t.Fatal(err)
	}
	return in
}

func TestTwoUsersSameVMName(t *testing.T) {
	alice := newFixture(t)
	root := alice.as(User{UID: 0, GID: 0, Name: "root"})
	root.newInstance("dev", freePort(t))
	alice.newInstance("dev", freePort(t))
	root.up("dev")
	alice.up("dev")
	if got, want := alice.lv.Running(), []string{"kmodvm-0-dev", "kmodvm-1000-dev"}; !slices.Equal(got, want) {
		t.Fatalf("running = %q, want %q", got, want)
	}
	for _, c := range []struct {
		dn  string
		uid int
	}{{"kmodvm-0-dev", 0}, {"kmodvm-1000-dev", 1000}} {
		d, _ := alice.lv.Domain(c.dn)
		o, err := vm.ParseOwner(d.XML)
		if err != nil || o == nil || o.UID != c.uid || o.VM != "dev" {
			t.Errorf("%s: owner %+v, %v; want uid %d", c.dn, o, err, c.uid)
		}
	}

	alice.lv.ResetCalls()
	if err := alice.sb.Destroy(testContext(t), "dev"); err != nil {
		t.Fatal(err)
	}
	for _, c := range alice.lv.Calls() {
		if strings.Contains(c, "kmodvm-0-dev") {
			t.Errorf("alice's destroy called %q on root's domain", c)
		}
	}
	if got := alice.lv.Running(); !slices.Equal(got, []string{"kmodvm-0-dev"}) {
		t.Errorf("running after alice's destroy = %q, want root's domain alone", got)
	}
	if !exists(filepath.Join(vmsDir(root.opt.State), "dev", "instance.json")) {
		t.Error("root's VM state is gone")
	}
	st, err := root.sb.Status(testContext(t), "dev")
	if err != nil || st.State != string(vm.StateRunning) || st.Problem != "" {
		t.Errorf("root's status = %+v, %v", st, err)
	}
}

func TestLegacyInstanceKeepsItsDomain(t *testing.T) {
	fx := newFixture(t)
	fx.instance("dev", freePort(t)) // no "domain" in instance.json
	fx.running("dev")               // its domain has no metadata
	if err := fx.lv.StopByItself("kmodvm-dev"); err != nil {
		t.Fatal(err)
	}
	fx.up("dev")
	if got := fx.lv.Running(); !slices.Equal(got, []string{"kmodvm-dev"}) {
		t.Fatalf("running = %q, want the legacy domain", got)
	}
	d, _ := fx.lv.Domain("kmodvm-dev")
	if o, err := vm.ParseOwner(d.XML); err != nil || o == nil || *o != fx.ours("dev") {
		t.Errorf("redefined legacy domain has owner %+v, %v; want %+v", o, err, fx.ours("dev"))
	}
	saved, err := loadInstance(fx.opt.State, "dev")
	if err != nil || saved.DomainName() != "kmodvm-dev" {
		t.Errorf("instance.json now names domain %q (%v), want kmodvm-dev", saved.DomainName(), err)
	}
}

func TestDomainSpecPerURI(t *testing.T) {
	in := &Instance{
		Name: "dev", Domain: "kmodvm-1000-dev", UUID: "5b0f8c3e-2f1a-4c6e-9d7b-3a1e2c4d5f60", Accel: vm.AccelTCG,
		SSHPort: 40022, MemoryMiB: 512, CPUs: 1, Kernel: "/home/alice/.cache/kmodvm/kernels/k1/bzImage",
		Cmdline: Cmdline, dir: "/home/alice/.local/state/kmodvm/vms/dev",
	}
	tests := []struct {
		golden, uri, label string
	}{
		{"system.xml", "qemu:///system", "+1000:+1000"},
		{"system-socket.xml", "qemu:///system?socket=/run/libvirt/libvirt-sock", "+1000:+1000"},
		{"session.xml", "qemu:///session", ""},
		{"remote.xml", "qemu+ssh://alice@build.example/system", ""},
	}
	t.Run("the group that reaches libvirt's domain directory", func(t *testing.T) {
		u := testUser
		u.QEMUGroup = 64055
		if got := in.DomainSpec("qemu:///system", u).QEMUUser; got != "+1000:+64055" {
			t.Errorf("DAC label = %q, want +1000:+64055", got)
		}
		if qemuGroup(0) != 0 {
			t.Errorf("root needs no other group")
		}
	})
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			spec := in.DomainSpec(tt.uri, testUser)
			if spec.QEMUUser != tt.label {
				t.Errorf("DAC label = %q, want %q", spec.QEMUUser, tt.label)
			}
			x, err := vm.DomainXML(spec)
			if err != nil {
				t.Fatal(err)
			}
			if tt.golden == "system-socket.xml" {
				return // same XML as system.xml; the label check is the point
			}
			golden.Check(t, filepath.Join("testdata", "domain", tt.golden), []byte(x))
		})
	}
}

func TestPrepareConsoleLog(t *testing.T) {
	tests := []struct {
		name      string
		uri       string
		existing  string // content of the log before; "" = none
		owner     int
		wantAside bool // moved to console.log.1
		wantLog   bool // console.log exists after, empty if moved
	}{
		{"no log yet", "", "", 1000, false, true},
		{"our small log stays", "", "boot 1\n", 1000, false, true},
		{"root's log moves aside", "", "boot 1\n", 0, true, true},
		{"oversized log moves aside", "", strings.Repeat("x", maxConsoleLog+1), 1000, true, true},
		{"session daemon: left to libvirt", vm.URISession, "boot 1\n", 0, false, true},
		{"session daemon, no log: none made", vm.URISession, "", 1000, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, func(o *Options) { o.URI = tt.uri })
			in := fx.instance("dev", freePort(t))
			if tt.existing != "" {
				writeFile(t, in.ConsoleLog(), tt.existing)
			}
			fx.sb.consoleStat = func(path string) (int, int64, error) {
				_, size, err := statOwner(path)
				return tt.owner, size, err
			}
			if err := fx.sb.prepareConsoleLog(in); err != nil {
				t.Fatal(err)
			}
			aside, err := os.ReadFile(in.ConsoleLog() + ".1")
			if gotAside := err == nil; gotAside != tt.wantAside || (gotAside && string(aside) != tt.existing) {
				t.Errorf("console.log.1: %q, %v; want moved aside: %v", aside, err, tt.wantAside)
			}
			cur, err := os.ReadFile(in.ConsoleLog())
			if gotLog := err == nil; gotLog != tt.wantLog {
				t.Fatalf("console.log exists: %v, want %v", gotLog, tt.wantLog)
			}
			if want := tt.existing; tt.wantLog && (tt.wantAside || tt.existing == "") && string(cur) != "" {
				t.Errorf("console.log after = %q, want empty (was %d bytes)", cur, len(want))
			}
			if tt.wantLog && !tt.wantAside && string(cur) != tt.existing {
				t.Errorf("console.log after = %q, want it kept (%q)", cur, tt.existing)
			}
			if fi, err := os.Stat(in.ConsoleLog()); err == nil && fi.Mode().Perm() != 0o600 && tt.existing == "" {
				t.Errorf("new console.log has mode %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

func TestConsoleUnreadable(t *testing.T) {
	dir := t.TempDir()
	readable := writeFile(t, filepath.Join(dir, "console.log"), "x")
	if got := ConsoleUnreadable(readable); got != "" {
		t.Errorf("readable log: %q", got)
	}
	if got := ConsoleUnreadable(filepath.Join(dir, "missing.log")); !strings.Contains(got, "no such file") {
		t.Errorf("missing log: %q", got)
	}
}

func TestExplainUnreadable(t *testing.T) {
	tests := []struct {
		rotated bool
		owner   int
		want    string
	}{
		{true, 0, "virtlogd rotated the log to /s/console.log.0"},
		{false, 0, "owned by root: virtlogd created it"},
		{false, 1001, "owned by another user"},
	}
	for _, tt := range tests {
		got := explainUnreadable("/s/console.log", tt.rotated, tt.owner)
		if !strings.Contains(got, tt.want) || !strings.Contains(got, "next start of the VM") {
			t.Errorf("explainUnreadable(%v, %d) = %q, want %q", tt.rotated, tt.owner, got, tt.want)
		}
	}
}
