package vm

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/sshtest"
)

// TestE2ELibvirtOverSSH connects to the real system libvirtd with a qemu+ssh:// URI when
// KMODVM_E2E=1. The "remote host" is the in-process SSH server forwarding to the daemon's
// socket, found through known_hosts= and keyfile= as a user's URI would name them; the
// connection answers and the URI's host key is checked (a wrong known_hosts is refused).
func TestE2ELibvirtOverSSH(t *testing.T) {
	if os.Getenv("KMODVM_E2E") != "1" {
		t.Skip("set KMODVM_E2E=1 to run against a real libvirtd (qemu:///system)")
	}
	srv, keyFile, kh := forwardingHost(t)
	q := url.Values{"keyfile": {keyFile}, "known_hosts": {kh}}
	uri := "qemu+ssh://root@" + srv.Addr() + "/system?" + q.Encode()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Connect(ctx, uri, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.ConnectGetLibVersion()
	if err != nil || v == 0 {
		t.Errorf("libvirt version over %s: %d, %v", uri, v, err)
	}
	if err := c.Disconnect(); err != nil {
		t.Errorf("disconnect: %v", err)
	}
	if err := srv.WaitNoConnections(ctx); err != nil {
		t.Errorf("the SSH connection stayed open after Disconnect: %v", err)
	}

	writeKnownHost(t, kh, srv.Addr(), sshtest.NewKey(t).PublicKey())
	if c, err := Connect(ctx, uri, nil); err == nil {
		c.Disconnect()
		t.Fatal("connected to a host whose key does not match known_hosts")
	}
	// socket= naming what no daemon serves: an error that says what to check.
	if c, err := Connect(ctx, uri+"&socket=/nonexistent/libvirt-sock", nil); err == nil || !strings.Contains(err.Error(), "hint: ") {
		if c != nil {
			c.Disconnect()
		}
		t.Fatalf("Connect with a socket= nothing serves: %v", err)
	}
}
