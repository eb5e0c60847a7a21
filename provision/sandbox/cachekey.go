package sandbox

import (
	"context"
	"fmt"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/kernel"
)

// CacheKeys name the cache entries `up` would use for the configured image and kernel,
// computed from the settings alone, before anything is built or restored.
type CacheKeys struct {
	// Image is the toolchain root's own cache key: its entry is images/roots/<Image>.
	Image string `json:"image"`
	// Kernel is kernel.RequestKey: it changes whenever the kernel's own cache key can.
	Kernel string `json:"kernel"`
	// DiskFormat is the guest disk's recipe version; the disk's own key is a function of
	// the root, the kernel and this.
	DiskFormat int `json:"disk_format"`
	// Key joins the three: one string for a CI's cache action.
	Key string `json:"key"`
}

// CacheKeys computes the keys without libvirt, the root or the kernel source.
func (s *Sandbox) CacheKeys(ctx context.Context) (CacheKeys, error) {
	if err := s.opt.Image.Validate(); err != nil {
		return CacheKeys{}, err
	}
	img := s.opt.Image.Hash()
	k, err := kernel.RequestKey(ctx, s.opt.Kernel, img)
	if err != nil {
		return CacheKeys{}, fmt.Errorf("compute the kernel's cache key: %w", err)
	}
	return CacheKeys{
		Image: img, Kernel: k, DiskFormat: images.DiskFormatVersion,
		Key: fmt.Sprintf("kmodvm-%s-%s-disk%d", img[:16], k, images.DiskFormatVersion),
	}, nil
}
