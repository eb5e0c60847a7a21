package vm

import (
	"context"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/vmtest"
)

func TestParseOwner(t *testing.T) {
	withOwner := func(o Owner) string {
		s := baseSpec()
		s.Owner = &o
		x, err := DomainXML(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	tests := []struct {
		name    string
		xml     string
		want    *Owner
		wantErr string
	}{
		{"round trip", withOwner(Owner{UID: 1000, User: "alice", StateDir: "/home/a&b/vms/dev", VM: "dev"}),
			&Owner{UID: 1000, User: "alice", StateDir: "/home/a&b/vms/dev", VM: "dev"}, ""},
		{"root without user name", withOwner(Owner{UID: 0, VM: "dev"}), &Owner{UID: 0, VM: "dev"}, ""},
		{"no metadata", `<domain type="qemu"><name>kmodvm-dev</name></domain>`, nil, ""},
		{"other tool's metadata", `<domain type="qemu"><name>x</name><metadata><lb:vm xmlns:lb="https://example.org/x" owner-uid="5"/></metadata></domain>`, nil, ""},
		{"libvirt's own prefix", `<domain type="qemu"><name>x</name><metadata><k:vm xmlns:k="` + MetadataNS + `" owner-uid="7" name="dev"/></metadata></domain>`,
			&Owner{UID: 7, VM: "dev"}, ""},
		{"bad uid", `<domain type="qemu"><name>x</name><metadata><k:vm xmlns:k="` + MetadataNS + `" owner-uid="root"/></metadata></domain>`, nil, "not a uid"},
		{"not XML", `<domain`, nil, "parse domain XML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseOwner(tt.xml)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDriverOwner(t *testing.T) {
	f := vmtest.NewLibvirt()
	d := NewDriver(f, nil)
	ctx := context.Background()
	if _, found, err := d.Owner(ctx, "kmodvm-dev"); err != nil || found {
		t.Fatalf("missing domain: found=%v err=%v", found, err)
	}
	s := baseSpec()
	s.Owner = &Owner{UID: 1000, User: "alice", VM: "dev"}
	if err := d.Define(ctx, s); err != nil {
		t.Fatal(err)
	}
	o, found, err := d.Owner(ctx, "kmodvm-dev")
	if err != nil || !found || o == nil || o.UID != 1000 || o.String() != "uid 1000 (alice)" {
		t.Fatalf("Owner = %+v, %v, %v", o, found, err)
	}
	if err := f.AddDomain("user-vm", 0); err != nil {
		t.Fatal(err)
	}
	if o, found, err := d.Owner(ctx, "user-vm"); err != nil || !found || o != nil {
		t.Fatalf("foreign domain: Owner = %+v, %v, %v", o, found, err)
	}
}
