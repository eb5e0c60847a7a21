package vmtest

import (
	"crypto/rand"
	"fmt"
	"io"
	"path"
	"slices"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// The fake's storage: directory pools holding volumes in memory, as libvirt's dir pools
// hold files. Pools must be defined, built and started as in libvirt; a volume's path is
// the pool's target path joined with its name. Like every other call, storage calls are
// recorded and take injected errors and hooks (FailOn, OnCall) by method name; the name
// passed to a hook is the volume's, or the pool's for pool calls.

type pool struct {
	uuid      libvirt.UUID
	xml       libvirtxml.StoragePool
	built     bool
	active    bool
	autostart bool
	vols      map[string]*Volume
	available uint64
}

// Volume is a volume of a fake pool.
type Volume struct {
	Name     string
	Path     string
	Capacity uint64
	Format   string // the target format the volume was created with ("raw", "qcow2")
	Backing  string // the backing store's path, for an overlay
	Content  []byte // what was uploaded
}

func (f *Libvirt) poolLocked(p libvirt.StoragePool) (*pool, error) {
	fp, ok := f.pools[p.Name]
	if !ok || fp.uuid != p.UUID {
		return nil, Error(libvirt.ErrNoStoragePool, "Storage pool not found: no storage pool with matching name '%s'", p.Name)
	}
	return fp, nil
}

// enterPool is enter for a call on pool p; like enter it returns with f.mu held.
func (f *Libvirt) enterPool(method string, p libvirt.StoragePool) (*pool, error) {
	if err := f.enter(method, p.Name); err != nil {
		return nil, err
	}
	return f.poolLocked(p)
}

func (f *Libvirt) volLocked(v libvirt.StorageVol) (*pool, *Volume, error) {
	fp, ok := f.pools[v.Pool]
	if !ok || !fp.active {
		return nil, nil, Error(libvirt.ErrNoStorageVol, "Storage volume not found: no storage vol with matching path '%s'", v.Key)
	}
	vol, ok := fp.vols[v.Name]
	if !ok {
		return nil, nil, Error(libvirt.ErrNoStorageVol, "Storage volume not found: no storage vol with matching name '%s'", v.Name)
	}
	return fp, vol, nil
}

func volHandle(poolName string, v *Volume) libvirt.StorageVol {
	return libvirt.StorageVol{Pool: poolName, Name: v.Name, Key: v.Path}
}

// Pool returns the XML a pool was defined with and whether it is active and autostarts;
// ok is false when no such pool exists.
func (f *Libvirt) Pool(name string) (xml libvirtxml.StoragePool, active, autostart, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fp, ok := f.pools[name]
	if !ok {
		return libvirtxml.StoragePool{}, false, false, false
	}
	return fp.xml, fp.active, fp.autostart, true
}

// Volumes returns a copy of the volumes of pool name, sorted by name.
func (f *Libvirt) Volumes(name string) []Volume {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Volume
	if fp, ok := f.pools[name]; ok {
		for _, v := range fp.vols {
			c := *v
			c.Content = slices.Clone(v.Content)
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Volume) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// AddVolume puts a volume into an existing pool as another client would have: content
// as uploaded, format raw.
func (f *Libvirt) AddVolume(poolName, name string, content []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fp := f.pools[poolName]
	fp.vols[name] = &Volume{Name: name, Path: path.Join(fp.xml.Target.Path, name), Capacity: uint64(len(content)), Format: "raw", Content: content}
}

// SetPoolAvailable sets the free bytes StoragePoolGetInfo reports for pool name.
func (f *Libvirt) SetPoolAvailable(name string, bytes uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pools[name].available = bytes
}

// StopPool makes pool name inactive, as `virsh pool-destroy` does.
func (f *Libvirt) StopPool(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pools[name].active = false
}

func (f *Libvirt) StoragePoolLookupByName(name string) (libvirt.StoragePool, error) {
	err := f.enter("StoragePoolLookupByName", name)
	defer f.mu.Unlock()
	if err != nil {
		return libvirt.StoragePool{}, err
	}
	fp, ok := f.pools[name]
	if !ok {
		return libvirt.StoragePool{}, Error(libvirt.ErrNoStoragePool, "Storage pool not found: no storage pool with matching name '%s'", name)
	}
	return libvirt.StoragePool{Name: name, UUID: fp.uuid}, nil
}

func (f *Libvirt) StoragePoolDefineXML(doc string, _ uint32) (libvirt.StoragePool, error) {
	var x libvirtxml.StoragePool
	if err := x.Unmarshal(doc); err != nil {
		f.enter("StoragePoolDefineXML", "")
		f.mu.Unlock()
		return libvirt.StoragePool{}, Error(libvirt.ErrXMLError, "XML error: %v", err)
	}
	err := f.enter("StoragePoolDefineXML", x.Name)
	defer f.mu.Unlock()
	if err != nil {
		return libvirt.StoragePool{}, err
	}
	if x.Type != "dir" || x.Target == nil || x.Target.Path == "" {
		return libvirt.StoragePool{}, Error(libvirt.ErrXMLError, "the fake holds only dir pools with a target path")
	}
	if fp, ok := f.pools[x.Name]; ok {
		fp.xml = x
		return libvirt.StoragePool{Name: x.Name, UUID: fp.uuid}, nil
	}
	fp := &pool{uuid: newUUID(), xml: x, vols: map[string]*Volume{}, available: 1 << 40}
	f.pools[x.Name] = fp
	return libvirt.StoragePool{Name: x.Name, UUID: fp.uuid}, nil
}

func (f *Libvirt) StoragePoolBuild(p libvirt.StoragePool, _ libvirt.StoragePoolBuildFlags) error {
	fp, err := f.enterPool("StoragePoolBuild", p)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	fp.built = true
	return nil
}

func (f *Libvirt) StoragePoolCreate(p libvirt.StoragePool, _ libvirt.StoragePoolCreateFlags) error {
	fp, err := f.enterPool("StoragePoolCreate", p)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	if fp.active {
		return Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: storage pool '%s' is already active", p.Name)
	}
	if !fp.built {
		return Error(libvirt.ErrInternalError, "cannot open directory '%s': No such file or directory", fp.xml.Target.Path)
	}
	fp.active = true
	return nil
}

func (f *Libvirt) StoragePoolIsActive(p libvirt.StoragePool) (int32, error) {
	fp, err := f.enterPool("StoragePoolIsActive", p)
	defer f.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if fp.active {
		return 1, nil
	}
	return 0, nil
}

func (f *Libvirt) StoragePoolSetAutostart(p libvirt.StoragePool, autostart int32) error {
	fp, err := f.enterPool("StoragePoolSetAutostart", p)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	fp.autostart = autostart != 0
	return nil
}

func (f *Libvirt) StoragePoolRefresh(p libvirt.StoragePool, _ uint32) error {
	fp, err := f.enterPool("StoragePoolRefresh", p)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	if !fp.active {
		return Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: storage pool '%s' is not active", p.Name)
	}
	return nil
}

func (f *Libvirt) StoragePoolGetInfo(p libvirt.StoragePool) (state uint8, capacity, allocation, available uint64, err error) {
	fp, err := f.enterPool("StoragePoolGetInfo", p)
	defer f.mu.Unlock()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for _, v := range fp.vols {
		allocation += uint64(len(v.Content))
	}
	if fp.active {
		state = uint8(libvirt.StoragePoolRunning)
	}
	return state, allocation + fp.available, allocation, fp.available, nil
}

func (f *Libvirt) StorageVolLookupByName(p libvirt.StoragePool, name string) (libvirt.StorageVol, error) {
	err := f.enter("StorageVolLookupByName", name)
	defer f.mu.Unlock()
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	fp, err := f.poolLocked(p)
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	v, ok := fp.vols[name]
	if !ok || !fp.active {
		return libvirt.StorageVol{}, Error(libvirt.ErrNoStorageVol, "Storage volume not found: no storage vol with matching name '%s'", name)
	}
	return volHandle(p.Name, v), nil
}

func (f *Libvirt) StorageVolCreateXML(p libvirt.StoragePool, doc string, _ libvirt.StorageVolCreateFlags) (libvirt.StorageVol, error) {
	var x libvirtxml.StorageVolume
	xerr := x.Unmarshal(doc)
	err := f.enter("StorageVolCreateXML", x.Name)
	defer f.mu.Unlock()
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	if xerr != nil || x.Name == "" || x.Capacity == nil {
		return libvirt.StorageVol{}, Error(libvirt.ErrXMLError, "XML error: a volume needs a name and a capacity (%v)", xerr)
	}
	fp, err := f.poolLocked(p)
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	if !fp.active {
		return libvirt.StorageVol{}, Error(libvirt.ErrOperationInvalid, "Requested operation is not valid: storage pool '%s' is not active", p.Name)
	}
	if _, ok := fp.vols[x.Name]; ok {
		return libvirt.StorageVol{}, Error(libvirt.ErrStorageVolExist, "storage volume '%s' exists already", x.Name)
	}
	v := &Volume{Name: x.Name, Path: path.Join(fp.xml.Target.Path, x.Name), Capacity: x.Capacity.Value, Format: "raw"}
	if x.Target != nil && x.Target.Format != nil {
		v.Format = x.Target.Format.Type
	}
	if x.BackingStore != nil {
		v.Backing = x.BackingStore.Path
	}
	fp.vols[x.Name] = v
	return volHandle(p.Name, v), nil
}

// StorageVolUpload reads length bytes from r into the volume; a reader that fails leaves
// what it gave so far, as an interrupted stream leaves a partial file.
func (f *Libvirt) StorageVolUpload(v libvirt.StorageVol, r io.Reader, offset, length uint64, _ libvirt.StorageVolUploadFlags) error {
	err := f.enter("StorageVolUpload", v.Name)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	_, vol, err := f.volLocked(v)
	f.mu.Unlock()
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	var done uint64
	for done < length {
		n, rerr := r.Read(buf[:min(uint64(len(buf)), length-done)])
		f.mu.Lock()
		vol.Content = append(vol.Content[:offset+done], buf[:n]...)
		f.mu.Unlock()
		done += uint64(n)
		if rerr == io.EOF && done < length {
			return Error(libvirt.ErrInternalError, "stream ended after %d of %d bytes", done, length)
		}
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("upload stream: %w", rerr)
		}
	}
	return nil
}

// AppendVolume appends data to a volume, as a daemon writing the file does (a console log).
func (f *Libvirt) AppendVolume(poolName, name string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := f.pools[poolName].vols[name]
	v.Content = append(v.Content, data...)
}

// StorageVolDownload writes the volume's content from offset (length 0: to its end) to w.
func (f *Libvirt) StorageVolDownload(v libvirt.StorageVol, w io.Writer, offset, length uint64, _ libvirt.StorageVolDownloadFlags) error {
	err := f.enter("StorageVolDownload", v.Name)
	if err != nil {
		f.mu.Unlock()
		return err
	}
	_, vol, err := f.volLocked(v)
	var data []byte
	if err == nil && offset <= uint64(len(vol.Content)) {
		data = slices.Clone(vol.Content[offset:])
		if length > 0 && length < uint64(len(data)) {
			data = data[:length]
		}
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func (f *Libvirt) StorageVolDelete(v libvirt.StorageVol, _ libvirt.StorageVolDeleteFlags) error {
	err := f.enter("StorageVolDelete", v.Name)
	defer f.mu.Unlock()
	if err != nil {
		return err
	}
	fp, _, err := f.volLocked(v)
	if err != nil {
		return err
	}
	delete(fp.vols, v.Name)
	return nil
}

func (f *Libvirt) StorageVolGetInfo(v libvirt.StorageVol) (int8, uint64, uint64, error) {
	err := f.enter("StorageVolGetInfo", v.Name)
	defer f.mu.Unlock()
	if err != nil {
		return 0, 0, 0, err
	}
	_, vol, err := f.volLocked(v)
	if err != nil {
		return 0, 0, 0, err
	}
	return int8(libvirt.StorageVolFile), vol.Capacity, uint64(len(vol.Content)), nil
}

func (f *Libvirt) StorageVolGetPath(v libvirt.StorageVol) (string, error) {
	err := f.enter("StorageVolGetPath", v.Name)
	defer f.mu.Unlock()
	if err != nil {
		return "", err
	}
	_, vol, err := f.volLocked(v)
	if err != nil {
		return "", err
	}
	return vol.Path, nil
}

func newUUID() libvirt.UUID {
	var u libvirt.UUID
	_, _ = rand.Read(u[:]) // crypto/rand never fails on Linux
	return u
}
