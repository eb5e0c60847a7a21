package images

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestQCOW2VirtualSize(t *testing.T) {
	dir := t.TempDir()
	header := make([]byte, 104)
	copy(header, "QFI\xfb")
	binary.BigEndian.PutUint64(header[24:], 8<<30)
	for _, tt := range []struct {
		name    string
		content []byte
		want    uint64
		wantErr string
	}{
		{"qcow2 of 8 GiB", header, 8 << 30, ""},
		{"raw", make([]byte, 512), 0, "not a qcow2 image"},
		{"short", []byte("QFI"), 0, "header"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.WriteFile(p, tt.content, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := QCOW2VirtualSize(p)
			if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("QCOW2VirtualSize = %d, %v; want %d, %q", got, err, tt.want, tt.wantErr)
			}
		})
	}
	// What qemu-img itself writes, when it is here.
	if _, err := exec.LookPath("qemu-img"); err == nil {
		p := filepath.Join(dir, "real.qcow2")
		if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, "3G").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v %s", err, out)
		}
		if got, err := QCOW2VirtualSize(p); err != nil || got != 3<<30 {
			t.Errorf("qemu-img's 3G image: %d, %v", got, err)
		}
	}
}
