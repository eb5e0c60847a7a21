package remotehost

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/digitalocean/go-libvirt"
)

// libvirtDialer is go-libvirt's socket.Dialer over a Host.
type libvirtDialer struct {
	ctx context.Context
	h   *Host
}

func (d libvirtDialer) Dial() (net.Conn, error) { return d.h.DialLibvirt(d.ctx) }

// TestE2ELibvirtThroughSSH speaks libvirt's RPC to the real system daemon through an SSH
// connection (the in-process server forwarding to libvirtd's socket, as a remote host's sshd
// would), when KMODVM_E2E=1: the libvirt and QEMU versions come back.
func TestE2ELibvirtThroughSSH(t *testing.T) {
	if os.Getenv("KMODVM_E2E") != "1" {
		t.Skip("set KMODVM_E2E=1 to run against a real libvirtd (qemu:///system)")
	}
	fx := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	h, err := Dial(ctx, fx.target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l := libvirt.NewWithDialer(libvirtDialer{ctx, h})
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		t.Fatalf("libvirt through SSH: %v", err)
	}
	defer l.Disconnect()
	lib, err := l.ConnectGetLibVersion()
	if err != nil || lib < 9_000_000 {
		t.Fatalf("libvirt version through SSH: %d, %v", lib, err)
	}
	hv, err := l.ConnectGetVersion()
	if err != nil || hv == 0 {
		t.Fatalf("QEMU version through SSH: %d, %v", hv, err)
	}
	t.Logf("libvirt %d, QEMU %d, through one SSH connection to %s", lib, hv, fx.target.Addr())
}
