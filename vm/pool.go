package vm

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// PoolLibvirt is what the artifact pool needs of a libvirt connection: a directory storage
// pool and its volumes. Conn has it, and so has the fake in vm/vmtest.
type PoolLibvirt interface {
	StoragePoolLookupByName(name string) (libvirt.StoragePool, error)
	StoragePoolDefineXML(xml string, flags uint32) (libvirt.StoragePool, error)
	StoragePoolBuild(p libvirt.StoragePool, flags libvirt.StoragePoolBuildFlags) error
	StoragePoolCreate(p libvirt.StoragePool, flags libvirt.StoragePoolCreateFlags) error
	StoragePoolIsActive(p libvirt.StoragePool) (int32, error)
	StoragePoolSetAutostart(p libvirt.StoragePool, autostart int32) error
	StoragePoolRefresh(p libvirt.StoragePool, flags uint32) error
	StoragePoolGetInfo(p libvirt.StoragePool) (state uint8, capacity, allocation, available uint64, err error)
	StorageVolLookupByName(p libvirt.StoragePool, name string) (libvirt.StorageVol, error)
	StorageVolCreateXML(p libvirt.StoragePool, xml string, flags libvirt.StorageVolCreateFlags) (libvirt.StorageVol, error)
	StorageVolUpload(v libvirt.StorageVol, r io.Reader, offset, length uint64, flags libvirt.StorageVolUploadFlags) error
	StorageVolDownload(v libvirt.StorageVol, w io.Writer, offset, length uint64, flags libvirt.StorageVolDownloadFlags) error
	StorageVolDelete(v libvirt.StorageVol, flags libvirt.StorageVolDeleteFlags) error
	StorageVolGetInfo(v libvirt.StorageVol) (int8, uint64, uint64, error)
	StorageVolGetPath(v libvirt.StorageVol) (string, error)
}

var _ PoolLibvirt = (*libvirt.Libvirt)(nil)

// Pool is where a libvirt host keeps what its VMs boot from: kernels and base images,
// uploaded once and named by their content, and the VMs' disk overlays. It is a libvirt
// directory storage pool, so files get there through the libvirt connection itself (no
// write access for the SSH user, no second transfer channel), are owned and labelled by
// libvirt for its QEMU, and are found by every user and VM of that host.
//
// go-libvirt's upload stream is not sparse: a file goes as all its bytes. Base images are
// qcow2 (compact: no holes to lose) and kernels are small, so nothing is gained by a
// sparse stream.
type Pool struct {
	lv   PoolLibvirt
	pool libvirt.StoragePool
	Name string
	Dir  string // the pool's directory on the host
	// StaleAfter is how long a partial upload of another client may stand still before Put
	// takes it for abandoned and replaces it (0: 2 minutes).
	StaleAfter time.Duration
	// Poll is how often Put looks at another client's upload it waits for (0: 1 s).
	Poll time.Duration
	// Progress, when set, hears of an upload's bytes as they go.
	Progress func(name string, done, total int64)
}

// The artifact pool of a libvirt host (qemu:///system): kmodvm's volumes in libvirt's own
// images directory, which its QEMU may read on every distribution.
const (
	PoolName = "kmodvm"
	PoolDir  = "/var/lib/libvirt/images/kmodvm"
)

// doneSuffix names the empty volume that says an artifact's upload finished: a volume is
// created before its bytes arrive, so its existence proves nothing.
const doneSuffix = ".done"

// OpenPool returns the directory pool name on the host behind lv, defining it at dir,
// building (mkdir) and starting it, and marking it to start with libvirtd, as needed.
func OpenPool(ctx context.Context, lv PoolLibvirt, name, dir string) (*Pool, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := lv.StoragePoolLookupByName(name)
	if err != nil {
		if !isLibvirtCode(err, libvirt.ErrNoStoragePool) {
			return nil, fmt.Errorf("look up storage pool %q: %w", name, err)
		}
		doc, xerr := (&libvirtxml.StoragePool{Type: "dir", Name: name, Target: &libvirtxml.StoragePoolTarget{
			Path: dir, Permissions: &libvirtxml.StoragePoolTargetPermissions{Mode: "0755"}}}).Marshal()
		if xerr != nil {
			return nil, fmt.Errorf("storage pool %q XML: %w", name, xerr)
		}
		if p, err = lv.StoragePoolDefineXML(doc, 0); err != nil {
			return nil, fmt.Errorf("define storage pool %q at %s: %w", name, dir, err)
		}
		if err := lv.StoragePoolBuild(p, libvirt.StoragePoolBuildNew); err != nil {
			return nil, fmt.Errorf("build storage pool %q (mkdir %s): %w", name, dir, err)
		}
		if err := lv.StoragePoolSetAutostart(p, 1); err != nil {
			return nil, fmt.Errorf("mark storage pool %q to start with libvirtd: %w", name, err)
		}
	}
	active, err := lv.StoragePoolIsActive(p)
	if err != nil {
		return nil, fmt.Errorf("is storage pool %q active: %w", name, err)
	}
	if active == 0 {
		if err := lv.StoragePoolCreate(p, 0); err != nil {
			return nil, fmt.Errorf("start storage pool %q: %w", name, err)
		}
	}
	return &Pool{lv: lv, pool: p, Name: name, Dir: dir}, nil
}

// Available is how many bytes the pool's filesystem has free.
func (p *Pool) Available() (uint64, error) {
	_, _, _, avail, err := p.lv.StoragePoolGetInfo(p.pool)
	if err != nil {
		return 0, fmt.Errorf("free space of storage pool %q: %w", p.Name, err)
	}
	return avail, nil
}

// Put makes the local file the volume "key-name" of the pool (key: the file's content
// hash, or the cache key it was built under) and returns its path on the host. A volume
// already uploaded is reused; one another client is uploading is waited for; a partial
// upload that stands still for StaleAfter is replaced. An upload that fails or is
// cancelled leaves no volume.
func (p *Pool) Put(ctx context.Context, key, name, local string) (string, error) {
	vol := key + "-" + name
	if err := p.lv.StoragePoolRefresh(p.pool, 0); err != nil {
		return "", fmt.Errorf("refresh storage pool %q: %w", p.Name, err)
	}
	var lastAlloc uint64
	still := time.Now()
	for {
		if path, ok, err := p.done(vol); err != nil || ok {
			return path, err
		}
		v, err := p.lv.StorageVolLookupByName(p.pool, vol)
		if isLibvirtCode(err, libvirt.ErrNoStorageVol) {
			path, err := p.upload(ctx, vol, local)
			if !isLibvirtCode(err, libvirt.ErrStorageVolExist) {
				return path, err
			}
			continue // another client created it first: wait for it
		}
		if err != nil {
			return "", fmt.Errorf("look up volume %s in pool %q: %w", vol, p.Name, err)
		}
		// Someone else's upload, under way or abandoned.
		_, _, alloc, err := p.lv.StorageVolGetInfo(v)
		if err != nil && !isLibvirtCode(err, libvirt.ErrNoStorageVol) {
			return "", fmt.Errorf("size of volume %s in pool %q: %w", vol, p.Name, err)
		}
		if alloc != lastAlloc {
			lastAlloc, still = alloc, time.Now()
		} else if time.Since(still) >= p.staleAfter() {
			if err := p.lv.StorageVolDelete(v, 0); err != nil && !isLibvirtCode(err, libvirt.ErrNoStorageVol) {
				return "", fmt.Errorf("remove the abandoned partial upload %s from pool %q: %w", vol, p.Name, err)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(p.poll()):
		}
	}
}

// done returns the path of vol when its upload finished.
func (p *Pool) done(vol string) (string, bool, error) {
	if _, err := p.lv.StorageVolLookupByName(p.pool, vol+doneSuffix); err != nil {
		if isLibvirtCode(err, libvirt.ErrNoStorageVol) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("look up volume %s in pool %q: %w", vol+doneSuffix, p.Name, err)
	}
	v, err := p.lv.StorageVolLookupByName(p.pool, vol)
	if err != nil {
		if isLibvirtCode(err, libvirt.ErrNoStorageVol) { // the marker of a removed volume
			return "", false, p.remove(vol + doneSuffix)
		}
		return "", false, fmt.Errorf("look up volume %s in pool %q: %w", vol, p.Name, err)
	}
	path, err := p.lv.StorageVolGetPath(v)
	if err != nil {
		return "", false, fmt.Errorf("path of volume %s in pool %q: %w", vol, p.Name, err)
	}
	return path, true, nil
}

// upload creates vol, streams local into it and marks it done; on failure it removes it.
func (p *Pool) upload(ctx context.Context, vol, local string) (_ string, err error) {
	f, err := os.Open(local)
	if err != nil {
		return "", fmt.Errorf("upload %s: %w", local, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("upload %s: %w", local, err)
	}
	size := uint64(st.Size())
	v, err := p.createVolume(vol, size, "raw", "")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = p.lv.StorageVolDelete(v, 0)
		}
	}()
	r := &uploadReader{ctx: ctx, r: f, total: int64(size), name: vol, progress: p.Progress}
	if err := p.lv.StorageVolUpload(v, r, 0, size, 0); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", fmt.Errorf("upload %s to volume %s of pool %q: %w", local, vol, p.Name, err)
	}
	if _, err := p.createVolume(vol+doneSuffix, 0, "raw", ""); err != nil && !isLibvirtCode(err, libvirt.ErrStorageVolExist) {
		return "", err
	}
	path, err := p.lv.StorageVolGetPath(v)
	if err != nil {
		return "", fmt.Errorf("path of volume %s in pool %q: %w", vol, p.Name, err)
	}
	return path, nil
}

// Overlay creates the qcow2 volume name of capacity bytes on top of backing (a qcow2
// volume's path on the host) and returns its path. An existing volume of that name is
// replaced: an overlay is a VM's disk, made anew when the VM is.
func (p *Pool) Overlay(ctx context.Context, name, backing string, capacity uint64) (string, error) {
	return p.replaceVolume(ctx, name, capacity, "qcow2", backing)
}

// Empty creates the empty raw volume name, replacing one of that name, and returns its
// path: a file on the host for its daemons to write (a guest's console log).
func (p *Pool) Empty(ctx context.Context, name string) (string, error) {
	return p.replaceVolume(ctx, name, 0, "raw", "")
}

// replaceVolume creates the volume name (format, capacity, backing file if any) in place of
// one of that name and returns its path on the host.
func (p *Pool) replaceVolume(ctx context.Context, name string, capacity uint64, format, backing string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := p.remove(name); err != nil {
		return "", err
	}
	v, err := p.createVolume(name, capacity, format, backing)
	if err != nil {
		return "", err
	}
	path, err := p.lv.StorageVolGetPath(v)
	if err != nil {
		return "", fmt.Errorf("path of volume %s in pool %q: %w", name, p.Name, err)
	}
	return path, nil
}

// Download writes the volume name's bytes from offset to its end to w.
func (p *Pool) Download(ctx context.Context, name string, offset uint64, w io.Writer) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := p.lv.StorageVolLookupByName(p.pool, name)
	if err != nil {
		return fmt.Errorf("look up volume %s in pool %q: %w", name, p.Name, err)
	}
	if err := p.lv.StorageVolDownload(v, w, offset, 0, 0); err != nil {
		return fmt.Errorf("download volume %s of pool %q: %w", name, p.Name, err)
	}
	return nil
}

// Remove deletes the volume name and its done marker; a volume that is not there is fine.
func (p *Pool) Remove(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.remove(name + doneSuffix); err != nil {
		return err
	}
	return p.remove(name)
}

func (p *Pool) remove(name string) error {
	v, err := p.lv.StorageVolLookupByName(p.pool, name)
	if isLibvirtCode(err, libvirt.ErrNoStorageVol) {
		return nil
	}
	if err == nil {
		err = p.lv.StorageVolDelete(v, 0)
	}
	if err != nil && !isLibvirtCode(err, libvirt.ErrNoStorageVol) {
		return fmt.Errorf("remove volume %s from pool %q: %w", name, p.Name, err)
	}
	return nil
}

func (p *Pool) createVolume(name string, capacity uint64, format, backing string) (libvirt.StorageVol, error) {
	x := libvirtxml.StorageVolume{Name: name,
		Capacity:   &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: capacity},
		Allocation: &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 0},
		Target: &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: format},
			Permissions: &libvirtxml.StorageVolumeTargetPermissions{Mode: "0644"}}}
	if backing != "" {
		x.BackingStore = &libvirtxml.StorageVolumeBackingStore{Path: backing, Format: &libvirtxml.StorageVolumeTargetFormat{Type: "qcow2"}}
	}
	doc, err := x.Marshal()
	if err != nil {
		return libvirt.StorageVol{}, fmt.Errorf("volume %s XML: %w", name, err)
	}
	v, err := p.lv.StorageVolCreateXML(p.pool, doc, 0)
	if err != nil {
		return libvirt.StorageVol{}, fmt.Errorf("create volume %s in pool %q: %w", name, p.Name, err)
	}
	return v, nil
}

func (p *Pool) staleAfter() time.Duration {
	if p.StaleAfter > 0 {
		return p.StaleAfter
	}
	return 2 * time.Minute
}

func (p *Pool) poll() time.Duration {
	if p.Poll > 0 {
		return p.Poll
	}
	return time.Second
}

// uploadReader feeds an upload: it stops it when ctx ends and reports progress.
type uploadReader struct {
	ctx      context.Context
	r        io.Reader
	done     int64
	total    int64
	name     string
	progress func(name string, done, total int64)
}

func (u *uploadReader) Read(b []byte) (int, error) {
	if err := u.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := u.r.Read(b)
	u.done += int64(n)
	if u.progress != nil && n > 0 {
		u.progress(u.name, u.done, u.total)
	}
	return n, err
}
