package vm

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
)

// libvirtGroup is the group Debian's libvirtd lets onto its system socket.
const libvirtGroup = "libvirt"

// socketAccess is what decides why an ordinary user may not open the system socket.
type socketAccess struct {
	Sock      string
	User      string      // the user's name ("" when unknown)
	InGroupDB bool        // /etc/group lists the user in group libvirt
	InProcess bool        // this process has group libvirt (it logged in after joining)
	SockMode  os.FileMode // permission bits of the socket (0 when unknown)
}

// hostAccess gathers socketAccess for sock from the system.
func hostAccess(sock string) socketAccess {
	a := socketAccess{Sock: sock}
	g, gerr := user.LookupGroup(libvirtGroup)
	if u, err := user.Current(); err == nil {
		a.User = u.Username
		if ids, err := u.GroupIds(); err == nil && gerr == nil {
			a.InGroupDB = slices.Contains(ids, g.Gid)
		}
	}
	if gerr == nil {
		if gid, err := strconv.Atoi(g.Gid); err == nil {
			groups, _ := os.Getgroups()
			a.InProcess = slices.Contains(groups, gid) || os.Getegid() == gid
		}
	}
	if fi, err := os.Stat(sock); err == nil {
		a.SockMode = fi.Mode().Perm()
	}
	return a
}

// accessHint says what to do about a permission-denied system socket.
func accessHint(a socketAccess) string {
	who := a.User
	if who == "" {
		who = "$USER"
	}
	switch {
	case !a.InGroupDB:
		return fmt.Sprintf("you are not in group '%s': 'sudo adduser %s %s', then log out and in (or run kmodvm as root, or connect to %s instead)", libvirtGroup, who, libvirtGroup, URISession)
	case !a.InProcess:
		return fmt.Sprintf("/etc/group lists you in group '%s' but this session does not have it yet: log out and in, or run 'newgrp %s' and kmodvm from that shell", libvirtGroup, libvirtGroup)
	default:
		return fmt.Sprintf("you are in group '%s', but %s (mode %04o) does not let the group in: set unix_sock_group = \"%s\" and unix_sock_rw_perms = \"0770\" in /etc/libvirt/libvirtd.conf and restart libvirtd, or grant access through polkit (org.libvirt.unix.manage)",
			libvirtGroup, a.Sock, a.SockMode, libvirtGroup)
	}
}
