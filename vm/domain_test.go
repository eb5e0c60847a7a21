package vm

import (
	"path/filepath"
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"

	"github.com/kmodvm/kmodvm/vm/golden"
)

// baseSpec is a valid TCG spec the test cases start from.
func baseSpec() DomainSpec {
	return DomainSpec{
		Name:       "kmodvm-dev",
		UUID:       "5b0f8c3e-2f1a-4c6e-9d7b-3a1e2c4d5f60",
		Accel:      AccelTCG,
		MemoryMiB:  1024,
		CPUs:       1,
		Kernel:     "/var/lib/kmodvm/kernels/abc123/bzImage",
		Cmdline:    "console=ttyS0 root=/dev/vda rw panic=-1",
		Disk:       "/var/lib/kmodvm/vms/dev/disk.qcow2",
		ConsoleLog: "/var/lib/kmodvm/vms/dev/console.log",
		SSHPort:    2222,
	}
}

func TestDomainXMLGolden(t *testing.T) {
	tests := []struct {
		golden string
		edit   func(*DomainSpec)
	}{
		{"tcg-direct-kernel.xml", func(s *DomainSpec) {}},
		{"tcg-initrd.xml", func(s *DomainSpec) {
			s.Initrd = "/var/lib/kmodvm/kernels/abc123/initrd.img"
			s.Cmdline = "console=ttyS0 root=/dev/vda rw panic=-1 quiet"
		}},
		{"kvm.xml", func(s *DomainSpec) {
			s.Accel = AccelKVM
			s.CPUs = 2
			s.MemoryMiB = 2048
		}},
		{"port-forward-no-console-log.xml", func(s *DomainSpec) {
			s.SSHPort = 40022
			s.ConsoleLog = ""
			s.UUID = ""
		}},
		{"dac-static-label.xml", func(s *DomainSpec) {
			s.Kernel = "/root/.cache/kmodvm/bzImage"
			s.Disk = "/root/.cache/kmodvm/dev.qcow2"
			s.QEMUUser = "+0:+0"
		}},
		{"owner-metadata.xml", func(s *DomainSpec) {
			s.Name = "kmodvm-1000-dev"
			s.Title = "kmodvm VM dev of alice"
			s.Owner = &Owner{UID: 1000, User: "alice", StateDir: "/home/alice/.local/state/kmodvm/vms/dev", VM: "dev"}
		}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.golden, ".xml"), func(t *testing.T) {
			s := baseSpec()
			tt.edit(&s)
			got, err := DomainXML(s)
			if err != nil {
				t.Fatalf("DomainXML: %v", err)
			}
			golden.Check(t, filepath.Join("testdata", "domain", tt.golden), []byte(got))
		})
	}
}

// TestDomainXMLSemantics checks the properties the design relies on by parsing the XML back,
// so that a golden rewritten carelessly cannot hide a regression.
func TestDomainXMLSemantics(t *testing.T) {
	for _, accel := range []Accel{AccelTCG, AccelKVM} {
		t.Run(string(accel), func(t *testing.T) {
			s := baseSpec()
			s.Accel = accel
			s.SSHPort = 31337
			out, err := DomainXML(s)
			if err != nil {
				t.Fatal(err)
			}
			var d libvirtxml.Domain
			if err := d.Unmarshal(out); err != nil {
				t.Fatalf("unmarshal generated XML: %v", err)
			}
			wantType := map[Accel]string{AccelTCG: "qemu", AccelKVM: "kvm"}[accel]
			if d.Type != wantType {
				t.Errorf("domain type = %q, want %q", d.Type, wantType)
			}
			if accel == AccelKVM && (d.CPU == nil || d.CPU.Mode != "host-passthrough") {
				t.Errorf("kvm domain cpu = %+v, want host-passthrough", d.CPU)
			}
			if accel == AccelTCG && d.CPU != nil {
				t.Errorf("tcg domain has a <cpu> element %+v; libvirt's qemu64 default is what was measured to boot", d.CPU)
			}
			if d.OnPoweroff != "destroy" || d.OnReboot != "destroy" || d.OnCrash != "destroy" {
				t.Errorf("on_poweroff/on_reboot/on_crash = %q/%q/%q, want destroy for all", d.OnPoweroff, d.OnReboot, d.OnCrash)
			}
			if len(d.Devices.Interfaces) != 0 || len(d.Devices.Graphics) != 0 {
				t.Errorf("want no <interface> and no <graphics>, got %d and %d", len(d.Devices.Interfaces), len(d.Devices.Graphics))
			}
			if d.QEMUCommandline == nil {
				t.Fatal("no <qemu:commandline>")
			}
			var args []string
			for _, a := range d.QEMUCommandline.Args {
				args = append(args, a.Value)
			}
			joined := strings.Join(args, " ")
			for _, want := range []string{"hostfwd=tcp:127.0.0.1:31337-:22", "restrict=on", "bus=pci.0,addr=0x10"} {
				if !strings.Contains(joined, want) {
					t.Errorf("qemu args %q lack %q", joined, want)
				}
			}
			// The SSH forward is the guest's only way in, and it listens on 127.0.0.1 only.
			if n := strings.Count(joined, "hostfwd="); n != 1 {
				t.Errorf("qemu args %q hold %d port forwards, want exactly the SSH one", joined, n)
			}
			if n := strings.Count(joined, "-netdev"); n != 1 || strings.Contains(joined, "guestfwd") {
				t.Errorf("qemu args %q: want one -netdev and no guestfwd", joined)
			}
			if len(d.Devices.Serials) != 1 || d.Devices.Serials[0].Source == nil || d.Devices.Serials[0].Source.Pty == nil {
				t.Errorf("want one pty serial, got %+v", d.Devices.Serials)
			} else if l := d.Devices.Serials[0].Log; l == nil || l.File != s.ConsoleLog || l.Append != "on" {
				t.Errorf("serial log = %+v, want file %q append on", l, s.ConsoleLog)
			}
		})
	}
}

func TestDomainSpecValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*DomainSpec)
		wantErr string // substring; "" means valid
	}{
		{"valid", func(s *DomainSpec) {}, ""},
		{"empty name", func(s *DomainSpec) { s.Name = "" }, "name is empty"},
		{"name with slash", func(s *DomainSpec) { s.Name = "a/b" }, `name "a/b"`},
		{"name with space", func(s *DomainSpec) { s.Name = "a b" }, `name "a b"`},
		{"bad uuid", func(s *DomainSpec) { s.UUID = "not-a-uuid" }, "UUID"},
		{"accel auto unresolved", func(s *DomainSpec) { s.Accel = AccelAuto }, "not resolved"},
		{"accel empty", func(s *DomainSpec) { s.Accel = "" }, "not resolved"},
		{"accel unknown", func(s *DomainSpec) { s.Accel = "hvf" }, "unknown accel"},
		{"memory zero", func(s *DomainSpec) { s.MemoryMiB = 0 }, "memory"},
		{"cpus zero", func(s *DomainSpec) { s.CPUs = 0 }, "CPUs"},
		{"kernel empty", func(s *DomainSpec) { s.Kernel = "" }, "kernel path is empty"},
		{"kernel relative", func(s *DomainSpec) { s.Kernel = "out/bzImage" }, `kernel path "out/bzImage" is relative`},
		{"initrd relative", func(s *DomainSpec) { s.Initrd = "initrd.img" }, "initrd path"},
		{"disk empty", func(s *DomainSpec) { s.Disk = "" }, "disk path is empty"},
		{"disk relative", func(s *DomainSpec) { s.Disk = "./disk.qcow2" }, "disk path"},
		{"console log relative", func(s *DomainSpec) { s.ConsoleLog = "console.log" }, "console log path"},
		{"cmdline newline", func(s *DomainSpec) { s.Cmdline = "a\nb" }, "newline"},
		{"port zero", func(s *DomainSpec) { s.SSHPort = 0 }, "SSH port 0"},
		{"port too big", func(s *DomainSpec) { s.SSHPort = 70000 }, "SSH port 70000"},
		{"qemu user bad", func(s *DomainSpec) { s.QEMUUser = "root" }, "+UID:+GID"},
		{"qemu user ok", func(s *DomainSpec) { s.QEMUUser = "+1000:+1000" }, ""},
		{"no uuid ok", func(s *DomainSpec) { s.UUID = "" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.edit(&s)
			_, err := DomainXML(s)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("DomainXML: unexpected error %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("DomainXML: no error, want one containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("DomainXML error = %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseAccel(t *testing.T) {
	tests := []struct {
		in      string
		want    Accel
		wantErr bool
	}{
		{"", AccelAuto, false},
		{"auto", AccelAuto, false},
		{"KVM", AccelKVM, false},
		{" tcg ", AccelTCG, false},
		{"hvf", "", true},
	}
	for _, tt := range tests {
		got, err := ParseAccel(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseAccel(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNewDomainUUID(t *testing.T) {
	a, err := NewDomainUUID()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewDomainUUID()
	if err != nil {
		t.Fatal(err)
	}
	if !uuidRE.MatchString(a) || a[14] != '4' {
		t.Errorf("NewDomainUUID() = %q, want a version-4 UUID", a)
	}
	if a == b {
		t.Errorf("two calls returned the same UUID %q", a)
	}
}
