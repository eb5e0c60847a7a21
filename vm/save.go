package vm

import (
	"context"
	"fmt"
	"strings"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Saving and restoring a running guest (libvirt's virDomainSave / virDomainRestore).
//
// A save writes the guest's memory and device state to a file and stops the domain; a
// restore starts a new QEMU from that file, with a replacement domain XML when given one. The
// replacement must pass libvirt's ABI-stability check against the XML stored in the file:
// the same virt type, UUID, memory, vCPUs, machine, features and devices (with their
// addresses). What it may change are the host-side things: the domain's name, title and
// metadata, the disk's source file, the serial log file, and the QEMU command line — which
// is where the SSH port forward lives. RestoreXML makes such an XML.
//
// The file is only as good as the disk it was saved with: restoring it on a disk that
// changed since corrupts the guest's file system. Callers keep the two together.

// saveFlags make a restore resume the guest running, whatever its state at save time.
const saveFlags = uint32(libvirt.DomainSaveRunning)

// Save saves domain name's memory to path and stops it. path is opened by libvirtd: it must
// be an absolute path in a directory the daemon can write.
func (d *Driver) Save(ctx context.Context, name, path string) error {
	dom, st, err := d.lookupState(ctx, name)
	if err != nil {
		return fmt.Errorf("save domain %q: %w", name, err)
	}
	if st != StateRunning && st != StatePaused {
		return fmt.Errorf("save domain %q: it is %s", name, st)
	}
	if err := d.lv.DomainSaveFlags(dom, path, nil, saveFlags); err != nil {
		return fmt.Errorf("save domain %q to %s: %w", name, path, err)
	}
	d.log.Info("saved domain", "domain", name, "file", path)
	return nil
}

// SavedXML returns the domain XML stored in the save file path. A file that is not a
// libvirt save image fails here ("image magic is incorrect"), before anything is started.
func (d *Driver) SavedXML(ctx context.Context, path string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	x, err := d.lv.DomainSaveImageGetXMLDesc(path, 0)
	if err != nil {
		return "", fmt.Errorf("read the domain XML of save file %s: %w", path, err)
	}
	return x, nil
}

// Restore starts a domain from the save file path with the replacement domain XML xml
// (see RestoreXML), running. A domain of the same name and UUID that is defined and stopped
// becomes that running domain; its persistent definition stays as it is.
func (d *Driver) Restore(ctx context.Context, path, xml string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name := "?"
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(xml); err == nil {
		name = dom.Name
	}
	if err := d.lv.DomainRestoreFlags(path, libvirt.OptString{xml}, saveFlags); err != nil {
		return fmt.Errorf("restore domain %q from %s: %w", name, path, err)
	}
	d.log.Info("restored domain", "domain", name, "file", path)
	return nil
}

// Versions reports the libvirt daemon's version and its hypervisor's (QEMU's), as
// major*1000000 + minor*1000 + micro. A save file is tied to both.
func (d *Driver) Versions(ctx context.Context) (libvirtVersion, qemuVersion uint64, err error) {
	if err := ctx.Err(); err != nil {
		return 0, 0, err
	}
	if libvirtVersion, err = d.lv.ConnectGetLibVersion(); err != nil {
		return 0, 0, fmt.Errorf("ask libvirt for its version: %w", err)
	}
	if qemuVersion, err = d.lv.ConnectGetVersion(); err != nil {
		return 0, 0, fmt.Errorf("ask libvirt for QEMU's version: %w", err)
	}
	return libvirtVersion, qemuVersion, nil
}

// DomainFormat is the version of the domain shape DomainXML builds. Part of a save's cache
// key: a change to the devices makes every save made with the old shape unrestorable.
const DomainFormat = 1

// RestoreXML turns saved, the domain XML a save file holds, into the replacement XML that
// restores it as the guest s describes: s's name, title, owner metadata, disk file, console
// log, SSH port and QEMU identity; everything else (the ABI: type, UUID, memory, vCPUs,
// machine, devices and their addresses) stays as saved. It fails when s asks for a machine
// that differs from the saved one where the ABI is concerned: such a save is stale for s.
func RestoreXML(saved string, s DomainSpec) (string, error) {
	if err := s.Validate(); err != nil {
		return "", err
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(saved); err != nil {
		return "", fmt.Errorf("parse the domain XML of the save: %w", err)
	}
	if err := checkABI(&dom, s); err != nil {
		return "", err
	}
	dom.ID = nil
	dom.Name = s.Name
	dom.Title = s.Title
	dom.Metadata = nil
	if s.Owner != nil {
		dom.Metadata = &libvirtxml.DomainMetadata{XML: s.Owner.metadataXML()}
	}
	if dom.Devices == nil || len(dom.Devices.Disks) != 1 {
		return "", fmt.Errorf("the domain XML of the save does not have exactly one disk")
	}
	disk := &dom.Devices.Disks[0]
	disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: s.Disk}}
	disk.BackingStore = nil // libvirt reads the new overlay's own backing chain
	if len(dom.Devices.Serials) > 0 {
		ser := &dom.Devices.Serials[0]
		ser.Log = nil
		if s.ConsoleLog != "" {
			ser.Log = &libvirtxml.DomainChardevLog{File: s.ConsoleLog, Append: "on"}
		}
		ser.Source = &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}
	}
	if len(dom.Devices.Consoles) > 0 {
		con := &dom.Devices.Consoles[0]
		con.Source = &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}}
		con.Log = nil // libvirt mirrors the serial's log here; the serial's is the one it opens
	}
	if dom.QEMUCommandline == nil || !replaceNetdev(dom.QEMUCommandline, s.SSHPort) {
		return "", fmt.Errorf("the domain XML of the save has no SSH port forward (-netdev %s) to move", netdevID)
	}
	dom.SecLabel = nil
	if s.QEMUUser != "" {
		dom.SecLabel = []libvirtxml.DomainSecLabel{{Type: "static", Model: "dac", Relabel: "no", Label: s.QEMUUser}}
	}
	out, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("marshal the restore XML of domain %q: %w", s.Name, err)
	}
	return out + "\n", nil
}

// checkABI compares what libvirt's ABI-stability check would reject, with a clearer error.
func checkABI(saved *libvirtxml.Domain, s DomainSpec) error {
	want, err := s.Domain()
	if err != nil {
		return err
	}
	var diffs []string
	if !strings.EqualFold(saved.UUID, s.UUID) {
		diffs = append(diffs, fmt.Sprintf("UUID %s, not %s", saved.UUID, s.UUID))
	}
	if saved.Type != want.Type {
		diffs = append(diffs, fmt.Sprintf("virt type %s, not %s", saved.Type, want.Type))
	}
	if got := memoryKiB(saved.Memory); got != uint64(s.MemoryMiB)*1024 {
		diffs = append(diffs, fmt.Sprintf("%d KiB of memory, not %d MiB", got, s.MemoryMiB))
	}
	if saved.VCPU == nil || saved.VCPU.Value != uint(s.CPUs) {
		n := uint(0)
		if saved.VCPU != nil {
			n = saved.VCPU.Value
		}
		diffs = append(diffs, fmt.Sprintf("%d vCPUs, not %d", n, s.CPUs))
	}
	if saved.OS == nil || saved.OS.Kernel != s.Kernel || saved.OS.Cmdline != s.Cmdline || saved.OS.Initrd != s.Initrd {
		diffs = append(diffs, "another kernel or command line")
	}
	if len(diffs) > 0 {
		return fmt.Errorf("the save does not fit domain %q: it has %s", s.Name, strings.Join(diffs, ", "))
	}
	return nil
}

// memoryKiB converts a domain's memory element to KiB (libvirt writes KiB; "" means KiB).
func memoryKiB(m *libvirtxml.DomainMemory) uint64 {
	if m == nil {
		return 0
	}
	v := uint64(m.Value)
	switch strings.ToLower(m.Unit) {
	case "", "k", "kib":
		return v
	case "m", "mib":
		return v * 1024
	case "g", "gib":
		return v * 1024 * 1024
	case "b", "bytes":
		return v / 1024
	}
	return 0
}

// replaceNetdev points the -netdev argument of kmodvm's NIC at sshPort; false when there is
// none.
func replaceNetdev(cl *libvirtxml.DomainQEMUCommandline, sshPort int) bool {
	want := NetdevArgs(sshPort)
	for i := range cl.Args {
		if cl.Args[i].Value == "-netdev" && i+1 < len(cl.Args) && strings.HasPrefix(cl.Args[i+1].Value, "user,id="+netdevID+",") {
			cl.Args[i+1].Value = want[1]
			return true
		}
	}
	return false
}
