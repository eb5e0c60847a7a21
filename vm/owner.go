package vm

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// MetadataNS is the XML namespace of kmodvm's <metadata> element in a domain definition.
const MetadataNS = "https://kmodvm.dev/xmlns/vm/1"

// Owner is who a kmodvm domain belongs to, kept in the domain's <metadata> so that kmodvm
// never touches a domain of another user (or another state directory) that shares a libvirt
// daemon with it.
type Owner struct {
	UID      int    // the owner's uid
	User     string // the owner's user name, when it resolved
	StateDir string // the VM's state directory
	VM       string // kmodvm's name of the VM
}

// String names the owner for messages: "uid 1000 (alice)".
func (o Owner) String() string {
	if o.User == "" {
		return "uid " + strconv.Itoa(o.UID)
	}
	return fmt.Sprintf("uid %d (%s)", o.UID, o.User)
}

// metadataXML renders o as the inner XML of a domain's <metadata>.
func (o Owner) metadataXML() string {
	var b strings.Builder
	b.WriteString(`<kmodvm:vm xmlns:kmodvm="` + MetadataNS + `"`)
	for _, a := range [][2]string{{"owner-uid", strconv.Itoa(o.UID)}, {"user", o.User}, {"state-dir", o.StateDir}, {"name", o.VM}} {
		b.WriteString(" " + a[0] + `="`)
		_ = xml.EscapeText(&b, []byte(a[1]))
		b.WriteString(`"`)
	}
	b.WriteString("/>")
	return b.String()
}

// ParseOwner reads kmodvm's metadata from a domain's XML; nil (and no error) when the domain
// has none, i.e. kmodvm did not define it or defined it before domains carried an owner.
func ParseOwner(domainXML string) (*Owner, error) {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(domainXML); err != nil {
		return nil, fmt.Errorf("parse domain XML: %w", err)
	}
	if dom.Metadata == nil {
		return nil, nil
	}
	dec := xml.NewDecoder(strings.NewReader(dom.Metadata.XML))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parse domain metadata: %w", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok || se.Name.Space != MetadataNS || se.Name.Local != "vm" {
			continue
		}
		var o Owner
		uid := ""
		for _, a := range se.Attr {
			switch a.Name.Local {
			case "owner-uid":
				uid = a.Value
			case "user":
				o.User = a.Value
			case "state-dir":
				o.StateDir = a.Value
			case "name":
				o.VM = a.Value
			}
		}
		if o.UID, err = strconv.Atoi(uid); err != nil || o.UID < 0 {
			return nil, fmt.Errorf("parse domain metadata: owner-uid %q is not a uid", uid)
		}
		return &o, nil
	}
}

// Owner reads the kmodvm owner of domain name. found is false when the domain is not defined;
// owner is nil when it is defined without kmodvm's metadata.
func (d *Driver) Owner(ctx context.Context, name string) (owner *Owner, found bool, err error) {
	dom, found, err := d.lookup(ctx, name)
	if err != nil || !found {
		return nil, found, err
	}
	x, err := d.lv.DomainGetXMLDesc(dom, 0)
	if err != nil {
		return nil, true, fmt.Errorf("get XML of domain %q: %w", name, err)
	}
	o, err := ParseOwner(x)
	if err != nil {
		return nil, true, fmt.Errorf("domain %q: %w", name, err)
	}
	return o, true, nil
}
