package sandbox

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// maxConsoleLog is the console log size above which a start begins a new log.
const maxConsoleLog = 1 << 20

// prepareConsoleLog makes sure the console log the domain is about to append to is the
// user's own. Under qemu:///system virtlogd (root) writes the serial log: a log it creates is
// root's and 0600, which the user cannot read. So before each start a log that is not the
// user's, or is over 1 MiB, moves aside to console.log.1 (the state directory is the user's),
// and an empty log owned by the user takes its place; virtlogd appends to it. Only
// qemu:///system needs this: the session daemon's virtlogd runs as the user.
func (s *Sandbox) prepareConsoleLog(in *Instance) error {
	if !isLocalSystem(s.opt.URI) {
		return nil // the session daemon's virtlogd runs as the user; a remote one writes remotely
	}
	path := in.ConsoleLog()
	uid, size, err := s.consoleStat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("prepare console log of VM %q: %w", in.Name, err)
	case uid != s.opt.User.UID || size > maxConsoleLog:
		if err := os.Rename(path, path+".1"); err != nil {
			return fmt.Errorf("prepare console log of VM %q: move the old log aside: %w", in.Name, err)
		}
	default:
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("prepare console log of VM %q: %w", in.Name, err)
	}
	return f.Close()
}

// statOwner reports the owner and size of path.
func statOwner(path string) (uid int, size int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, fmt.Errorf("stat %s: no owner information", path)
	}
	return int(st.Uid), fi.Size(), nil
}

// ConsoleUnreadable explains why the console log at path cannot be read, "" when it can.
func ConsoleUnreadable(path string) string {
	f, err := os.Open(path)
	if err == nil {
		f.Close()
		return ""
	}
	if !errors.Is(err, os.ErrPermission) {
		return err.Error()
	}
	_, rerr := os.Stat(path + ".0")
	owner, _, serr := statOwner(path)
	if serr != nil {
		owner = -1
	}
	return explainUnreadable(path, rerr == nil, owner)
}

// explainUnreadable says why the console log at path cannot be read: virtlogd rotated it
// (rotated: path.0 exists) and made a new root-owned one, or it belongs to owner.
func explainUnreadable(path string, rotated bool, owner int) string {
	why := "it is owned by another user"
	switch {
	case rotated:
		why = "virtlogd rotated the log to " + path + ".0 and created a new one, owned by root"
	case owner == 0:
		why = "it is owned by root: virtlogd created it"
	}
	return fmt.Sprintf("%s is not readable: %s; the next start of the VM makes a readable one", path, why)
}
