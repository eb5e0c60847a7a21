package images

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// QCOW2VirtualSize reads the virtual size (the guest's disk size, in bytes) from the header
// of the qcow2 image at path: what an overlay on it must be at least, made where no
// qemu-img can look at the image (a remote host's pool).
func QCOW2VirtualSize(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("qcow2 size of %s: %w", path, err)
	}
	defer f.Close()
	var h [32]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return 0, fmt.Errorf("qcow2 size of %s: header: %w", path, err)
	}
	// magic "QFI\xfb", version (4 bytes), backing file offset and size, cluster bits, then
	// the size at offset 24, all big-endian.
	if !bytes.Equal(h[:4], []byte("QFI\xfb")) {
		return 0, fmt.Errorf("qcow2 size of %s: not a qcow2 image", path)
	}
	return binary.BigEndian.Uint64(h[24:32]), nil
}
