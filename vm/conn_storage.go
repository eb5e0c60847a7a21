package vm

import (
	"io"

	"github.com/digitalocean/go-libvirt"
)

// The storage calls of Conn (Pool's), and those of a probe guest (ProbeKVMVia). Lookups, refreshes and deletes are safe to repeat on
// a redialed connection; a creation, a build and an upload are made once: a second try
// could find half of the first's work (Pool.Put cleans up after a failed upload itself).

var _ PoolLibvirt = (*Conn)(nil)

func (c *Conn) StoragePoolLookupByName(name string) (libvirt.StoragePool, error) {
	return call(c, func(s session) (libvirt.StoragePool, error) { return s.StoragePoolLookupByName(name) })
}

func (c *Conn) StoragePoolDefineXML(xml string, flags uint32) (libvirt.StoragePool, error) {
	return call(c, func(s session) (libvirt.StoragePool, error) { return s.StoragePoolDefineXML(xml, flags) })
}

func (c *Conn) StoragePoolBuild(p libvirt.StoragePool, flags libvirt.StoragePoolBuildFlags) error {
	return once(c, func(s session) error { return s.StoragePoolBuild(p, flags) })
}

func (c *Conn) StoragePoolCreate(p libvirt.StoragePool, flags libvirt.StoragePoolCreateFlags) error {
	return once(c, func(s session) error { return s.StoragePoolCreate(p, flags) })
}

func (c *Conn) StoragePoolIsActive(p libvirt.StoragePool) (int32, error) {
	return call(c, func(s session) (int32, error) { return s.StoragePoolIsActive(p) })
}

func (c *Conn) StoragePoolSetAutostart(p libvirt.StoragePool, autostart int32) error {
	return call0(c, func(s session) error { return s.StoragePoolSetAutostart(p, autostart) })
}

func (c *Conn) StoragePoolRefresh(p libvirt.StoragePool, flags uint32) error {
	return call0(c, func(s session) error { return s.StoragePoolRefresh(p, flags) })
}

func (c *Conn) StoragePoolGetInfo(p libvirt.StoragePool) (uint8, uint64, uint64, uint64, error) {
	type info struct {
		state                      uint8
		capacity, alloc, available uint64
	}
	v, err := call(c, func(s session) (info, error) {
		var i info
		var err error
		i.state, i.capacity, i.alloc, i.available, err = s.StoragePoolGetInfo(p)
		return i, err
	})
	return v.state, v.capacity, v.alloc, v.available, err
}

func (c *Conn) StorageVolLookupByName(p libvirt.StoragePool, name string) (libvirt.StorageVol, error) {
	return call(c, func(s session) (libvirt.StorageVol, error) { return s.StorageVolLookupByName(p, name) })
}

func (c *Conn) StorageVolCreateXML(p libvirt.StoragePool, xml string, flags libvirt.StorageVolCreateFlags) (libvirt.StorageVol, error) {
	var v libvirt.StorageVol
	err := once(c, func(s session) error {
		var err error
		v, err = s.StorageVolCreateXML(p, xml, flags)
		return err
	})
	return v, err
}

func (c *Conn) StorageVolUpload(v libvirt.StorageVol, r io.Reader, offset, length uint64, flags libvirt.StorageVolUploadFlags) error {
	return once(c, func(s session) error { return s.StorageVolUpload(v, r, offset, length, flags) })
}

// StorageVolDownload streams once: a stream that broke has written part of the bytes.
func (c *Conn) StorageVolDownload(v libvirt.StorageVol, w io.Writer, offset, length uint64, flags libvirt.StorageVolDownloadFlags) error {
	return once(c, func(s session) error { return s.StorageVolDownload(v, w, offset, length, flags) })
}

func (c *Conn) StorageVolDelete(v libvirt.StorageVol, flags libvirt.StorageVolDeleteFlags) error {
	return call0(c, func(s session) error { return s.StorageVolDelete(v, flags) })
}

func (c *Conn) StorageVolGetInfo(v libvirt.StorageVol) (int8, uint64, uint64, error) {
	type info struct {
		typ             int8
		capacity, alloc uint64
	}
	i, err := call(c, func(s session) (info, error) {
		var i info
		var err error
		i.typ, i.capacity, i.alloc, err = s.StorageVolGetInfo(v)
		return i, err
	})
	return i.typ, i.capacity, i.alloc, err
}

func (c *Conn) StorageVolGetPath(v libvirt.StorageVol) (string, error) {
	return call(c, func(s session) (string, error) { return s.StorageVolGetPath(v) })
}

var _ ProbeLibvirt = (*Conn)(nil)

// DomainCreateXML starts a transient domain: once (a second try could start a second one).
func (c *Conn) DomainCreateXML(xml string, flags libvirt.DomainCreateFlags) (libvirt.Domain, error) {
	var d libvirt.Domain
	err := once(c, func(s session) error {
		var err error
		d, err = s.DomainCreateXML(xml, flags)
		return err
	})
	return d, err
}

// DomainOpenConsole streams a domain's console to w until it ends: once (a stream that broke
// has lost what it carried).
func (c *Conn) DomainOpenConsole(d libvirt.Domain, dev libvirt.OptString, w io.Writer, flags uint32) error {
	return once(c, func(s session) error { return s.DomainOpenConsole(d, dev, w, flags) })
}
