// Package vm runs the sandbox guest: a libvirt domain booted straight into the kernel kmodvm
// built, reached over SSH (package vm/sshclient) through a port on 127.0.0.1.
//
// # Domain shape (DomainXML)
//
// Networking is QEMU user-mode (slirp), handed to QEMU through libvirt's <qemu:commandline>:
//
//	-netdev user,id=kmodvm0,restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:PORT-:22
//	-device virtio-net-pci,netdev=kmodvm0,bus=pci.0,addr=0x10
//
// Never a bridge and never libvirt's "default" network: those put the guest on a private
// range that these machines must not reach, and they need root-owned host setup. passt
// (<backend type='passt'/>) would be the typed alternative, but Debian's libvirt 9.0 rejects
// it. restrict=on leaves the guest reaching nothing but the forwarded SSH port. The NIC has an
// explicit PCI address because libvirt does not know about it: without one QEMU hands it the
// slot libvirt reserved for the disk and the start fails. libvirt marks such a domain
// "tainted (custom-argv)"; that is harmless.
//
// on_poweroff, on_reboot and on_crash are all "destroy": the guest is booted with panic=-1,
// so a kernel panic becomes a reboot, and a reboot stops the domain instead of looping. A
// stopped domain whose console log ends in a panic is how a crash is detected; tiny kernels
// without ACPI also cannot power off, so "reboot" is their way out too.
//
// The serial console is a pty with a <log> file: the pty keeps DomainOpenConsole and
// `virsh console` working, the file keeps the whole console (and any oops in it) on disk even
// when SSH dies with the guest.
package vm

import (
	"crypto/rand"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// Accel is the hypervisor acceleration a guest runs with.
type Accel string

const (
	// AccelAuto means: KVM if it really runs a guest here, else TCG (see ResolveAccel).
	AccelAuto Accel = "auto"
	// AccelKVM is hardware virtualisation through /dev/kvm (libvirt domain type 'kvm').
	AccelKVM Accel = "kvm"
	// AccelTCG is QEMU's software emulation (libvirt domain type 'qemu'): slow, works anywhere.
	AccelTCG Accel = "tcg"
)

// ParseAccel checks a user-supplied accel name (config file or --accel flag).
func ParseAccel(s string) (Accel, error) {
	switch a := Accel(strings.ToLower(strings.TrimSpace(s))); a {
	case AccelAuto, AccelKVM, AccelTCG:
		return a, nil
	case "":
		return AccelAuto, nil
	}
	return "", fmt.Errorf("unknown accel %q: use auto, kvm or tcg", s)
}

// DomainSpec is everything needed to define one sandbox guest.
type DomainSpec struct {
	Name string // libvirt domain name: letters, digits, '.', '_', '-'
	UUID string // kept stable per VM so redefinition works; empty lets libvirt pick one

	Accel Accel // resolved: AccelKVM or AccelTCG only

	MemoryMiB int
	CPUs      int

	// Direct kernel boot. Initrd is optional (a kernel with virtio built in needs none).
	Kernel, Initrd, Cmdline string

	Disk       string // qcow2 overlay, attached as virtio vda
	ConsoleLog string // optional: file the serial console is logged to (appended)

	SSHPort int // host 127.0.0.1:SSHPort is forwarded to guest port 22

	// QEMUUser, when set ("+UID:+GID"), pins QEMU's DAC identity with a static seclabel and
	// turns relabelling off: under qemu:///system QEMU then runs as that user and reads the
	// files in place instead of libvirt chowning them to libvirt-qemu (which cannot traverse
	// e.g. /root).
	QEMUUser string

	// Title is libvirt's one-line description of the domain (virsh list --title).
	Title string
	// Owner, when set, is written to the domain's <metadata> (see Owner).
	Owner *Owner
}

// netdevID names the user-mode network backend in the QEMU command line.
const netdevID = "kmodvm0"

// nicPCIAddr is the fixed slot of the NIC on pci.0; libvirt auto-assigns low slots to its own
// devices (disk, rng), so a high one cannot collide.
const nicPCIAddr = "0x10"

var (
	domainNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	uuidRE       = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	dacLabelRE   = regexp.MustCompile(`^\+[0-9]+:\+[0-9]+$`)
)

// Validate reports the first thing wrong with the spec, if any.
func (s DomainSpec) Validate() error {
	if s.Name == "" {
		return fmt.Errorf("domain spec: name is empty")
	}
	if !domainNameRE.MatchString(s.Name) || len(s.Name) > 64 {
		return fmt.Errorf("domain spec: name %q: use at most 64 letters, digits, '.', '_' or '-', starting with a letter or digit", s.Name)
	}
	if s.UUID != "" && !uuidRE.MatchString(s.UUID) {
		return fmt.Errorf("domain spec %q: UUID %q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s.Name, s.UUID)
	}
	switch s.Accel {
	case AccelKVM, AccelTCG:
	case AccelAuto, "":
		return fmt.Errorf("domain spec %q: accel %q is not resolved: resolve it to kvm or tcg first (ResolveAccel)", s.Name, s.Accel)
	default:
		return fmt.Errorf("domain spec %q: unknown accel %q: use kvm or tcg", s.Name, s.Accel)
	}
	if s.MemoryMiB < 64 {
		return fmt.Errorf("domain spec %q: memory %d MiB is too small: give the guest at least 64 MiB", s.Name, s.MemoryMiB)
	}
	if s.CPUs < 1 {
		return fmt.Errorf("domain spec %q: %d CPUs: give the guest at least 1", s.Name, s.CPUs)
	}
	paths := []struct {
		what, path string
		required   bool
	}{
		{"kernel", s.Kernel, true},
		{"initrd", s.Initrd, false},
		{"disk", s.Disk, true},
		{"console log", s.ConsoleLog, false},
	}
	for _, p := range paths {
		if p.path == "" {
			if p.required {
				return fmt.Errorf("domain spec %q: %s path is empty", s.Name, p.what)
			}
			continue
		}
		if !filepath.IsAbs(p.path) {
			return fmt.Errorf("domain spec %q: %s path %q is relative: libvirt resolves paths on its own side, give an absolute path", s.Name, p.what, p.path)
		}
	}
	if strings.ContainsAny(s.Title, "\n\x00") {
		return fmt.Errorf("domain spec %q: title contains a newline or NUL: libvirt takes one line", s.Name)
	}
	if strings.ContainsAny(s.Cmdline, "\n\x00") {
		return fmt.Errorf("domain spec %q: kernel command line contains a newline or NUL", s.Name)
	}
	if s.SSHPort < 1 || s.SSHPort > 65535 {
		return fmt.Errorf("domain spec %q: SSH port %d is out of range 1-65535", s.Name, s.SSHPort)
	}
	if s.QEMUUser != "" && !dacLabelRE.MatchString(s.QEMUUser) {
		return fmt.Errorf("domain spec %q: QEMU user %q is not of the form +UID:+GID (e.g. +0:+0)", s.Name, s.QEMUUser)
	}
	return nil
}

// NetdevArgs returns the QEMU arguments that give the guest user-mode networking with
// 127.0.0.1:sshPort forwarded to its port 22 (see the package comment).
func NetdevArgs(sshPort int) []string {
	return []string{
		"-netdev", "user,id=" + netdevID + ",restrict=on,ipv6=off,hostfwd=tcp:127.0.0.1:" + strconv.Itoa(sshPort) + "-:22",
		"-device", "virtio-net-pci,netdev=" + netdevID + ",bus=pci.0,addr=" + nicPCIAddr,
	}
}

// Domain builds the libvirt domain for s.
func (s DomainSpec) Domain() (*libvirtxml.Domain, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	port0 := uint(0)
	dom := &libvirtxml.Domain{
		Name:          s.Name,
		UUID:          s.UUID,
		Title:         s.Title,
		Memory:        &libvirtxml.DomainMemory{Value: uint(s.MemoryMiB), Unit: "MiB"},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: uint(s.MemoryMiB), Unit: "MiB"},
		VCPU:          &libvirtxml.DomainVCPU{Placement: "static", Value: uint(s.CPUs)},
		OS: &libvirtxml.DomainOS{
			Type:    &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			Kernel:  s.Kernel,
			Initrd:  s.Initrd,
			Cmdline: s.Cmdline,
		},
		Features: &libvirtxml.DomainFeatureList{
			ACPI: &libvirtxml.DomainFeature{},
			APIC: &libvirtxml.DomainFeatureAPIC{},
		},
		OnPoweroff: "destroy",
		OnReboot:   "destroy",
		OnCrash:    "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{
				Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2", Cache: "writeback", Discard: "unmap"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Disk}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"},
			}},
			// No USB controller: nothing uses it, and under TCG every device costs boot time.
			Controllers: []libvirtxml.DomainController{{Type: "usb", Model: "none"}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainSerialTarget{Type: "isa-serial", Port: &port0,
					Model: &libvirtxml.DomainSerialTargetModel{Name: "isa-serial"}},
			}},
			Consoles: []libvirtxml.DomainConsole{{
				Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
				Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &port0},
			}},
			RNGs: []libvirtxml.DomainRNG{{
				Model:   "virtio",
				Backend: &libvirtxml.DomainRNGBackend{Random: &libvirtxml.DomainRNGBackendRandom{Device: "/dev/urandom"}},
			}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
		QEMUCommandline: &libvirtxml.DomainQEMUCommandline{},
	}
	if s.ConsoleLog != "" {
		dom.Devices.Serials[0].Log = &libvirtxml.DomainChardevLog{File: s.ConsoleLog, Append: "on"}
	}
	switch s.Accel {
	case AccelKVM:
		dom.Type = "kvm"
		dom.CPU = &libvirtxml.DomainCPU{Mode: "host-passthrough"}
	case AccelTCG:
		// No <cpu>: libvirt passes "-accel tcg -cpu qemu64", which boots x86_64 kernels
		// (measured with 7.2); -cpu max was not faster under TCG.
		dom.Type = "qemu"
	}
	for _, a := range NetdevArgs(s.SSHPort) {
		dom.QEMUCommandline.Args = append(dom.QEMUCommandline.Args, libvirtxml.DomainQEMUCommandlineArg{Value: a})
	}
	if s.Owner != nil {
		dom.Metadata = &libvirtxml.DomainMetadata{XML: s.Owner.metadataXML()}
	}
	if s.QEMUUser != "" {
		dom.SecLabel = []libvirtxml.DomainSecLabel{{Type: "static", Model: "dac", Relabel: "no", Label: s.QEMUUser}}
	}
	return dom, nil
}

// DomainXML renders the libvirt domain XML for s, after validating it.
func DomainXML(s DomainSpec) (string, error) {
	dom, err := s.Domain()
	if err != nil {
		return "", err
	}
	out, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal domain %q: %w", s.Name, err)
	}
	return out + "\n", nil
}

// NewDomainUUID returns a random (version 4) UUID for a new VM. Store it with the VM and pass
// it in every DomainSpec for that VM: libvirt only redefines a domain in place when the UUID
// stays the same.
func NewDomainUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate domain UUID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
