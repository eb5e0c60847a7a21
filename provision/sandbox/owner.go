package sandbox

import (
	"context"
	"errors"
	"fmt"
)

// notOursError is claim's refusal: the domain belongs to someone else.
type notOursError struct{ msg string }

func (e *notOursError) Error() string { return e.msg }

// isNotOurs reports whether err is claim's refusal (not a failure to ask libvirt).
func isNotOurs(err error) bool {
	var e *notOursError
	return errors.As(err, &e)
}

// domainOf is the domain VM name lives in, from its instance.json when it has one (legacy
// says it predates owner metadata), else the name a new VM of this user would get.
func (s *Sandbox) domainOf(name string) (dn string, legacy bool) {
	if in, err := loadInstance(s.opt.State, name); err == nil {
		return in.DomainName(), in.legacy()
	}
	return DomainName(s.opt.User.UID, name), false
}

// claim checks that domain dn may be defined, started, stopped or removed for VM name: it is
// not defined, or its kmodvm metadata names this user and this state directory. A domain
// without kmodvm metadata is only ours under the legacy name of a VM whose instance.json
// predates metadata. Anything else belongs to someone else, who shares this libvirt daemon:
// the error names the owner, and kmodvm leaves the domain alone.
func (s *Sandbox) claim(ctx context.Context, name, dn string, legacy bool) error {
	o, found, err := s.drv.Owner(ctx, dn)
	if err != nil || !found {
		return err
	}
	dir := s.StateDir(name)
	const hint = "hint: kmodvm never changes a domain it did not define for you; pick another VM name (--name)"
	switch {
	case o == nil && legacy:
		return nil
	case o == nil:
		return &notOursError{fmt.Sprintf("VM %q: libvirt domain %s was not defined by kmodvm for you (it has no kmodvm owner metadata), so kmodvm leaves it alone.\n%s", name, dn, hint)}
	case o.UID != s.opt.User.UID:
		if o.User == "" {
			o.User = s.opt.LookupUser(o.UID)
		}
		return &notOursError{fmt.Sprintf("VM %q: libvirt domain %s belongs to %s, not to you (uid %d), so kmodvm leaves it alone.\n%s", name, dn, o, s.opt.User.UID, hint)}
	case o.StateDir != dir:
		return &notOursError{fmt.Sprintf("VM %q: libvirt domain %s belongs to the kmodvm state directory %s, not %s, so kmodvm leaves it alone.\nhint: run kmodvm with the state directory that VM was created with, or pick another VM name (--name)", name, dn, o.StateDir, dir)}
	}
	return nil
}
