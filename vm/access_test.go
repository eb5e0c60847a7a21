package vm

import (
	"strings"
	"testing"
)

func TestAccessHint(t *testing.T) {
	tests := []struct {
		name string
		a    socketAccess
		want []string
	}{
		{"not in the group", socketAccess{User: "alice"}, []string{"not in group 'libvirt'", "sudo adduser alice libvirt", "log out and in"}},
		{"joined, not logged in again", socketAccess{User: "alice", InGroupDB: true}, []string{"/etc/group lists you", "newgrp libvirt"}},
		{"socket not group-writable", socketAccess{Sock: "/run/libvirt/libvirt-sock", InGroupDB: true, InProcess: true, SockMode: 0o700},
			[]string{"/run/libvirt/libvirt-sock (mode 0700)", "unix_sock_group", "unix_sock_rw_perms", "polkit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := accessHint(tt.a)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("hint %q lacks %q", got, w)
				}
			}
		})
	}
}
