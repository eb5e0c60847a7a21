package remotehost

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "known_hosts"), nil, 0o600)
	known := filepath.Join(home, ".ssh", "known_hosts")
	tests := []struct {
		uri     string
		want    Target // URI is filled in from uri
		wantErr string
	}{
		{uri: "qemu+ssh://dev@lab1/system",
			want: Target{User: "dev", Host: "lab1", Port: 22, KnownHosts: []string{known}, Agent: true}},
		{uri: "qemu+ssh://dev@lab1:2222/system?keyfile=~/keys/lab&known_hosts=/etc/kh&socket=/run/libvirt/virtqemud-sock",
			want: Target{User: "dev", Host: "lab1", Port: 2222, KeyFile: filepath.Join(home, "keys/lab"), KnownHosts: []string{"/etc/kh"}, Socket: "/run/libvirt/virtqemud-sock", Agent: true}},
		{uri: "qemu+ssh://dev@[::1]:22/system?sshauth=privkey&no_verify=0&known_hosts_verify=normal",
			want: Target{User: "dev", Host: "::1", Port: 22, KnownHosts: []string{known}}},
		{uri: "qemu:///system", wantErr: "is not a qemu+ssh:// URI"},
		{uri: "qemu+ssh:///system", wantErr: "names no host"},
		{uri: "qemu+ssh://dev@lab1/session", wantErr: `not "/session"`},
		{uri: "qemu+ssh://dev@lab1:99999/system", wantErr: "is not a port number"},
		{uri: "qemu+ssh://dev:secret@lab1/system", wantErr: "holds a password"},
		{uri: "qemu+ssh://dev@lab1/system?no_verify=1", wantErr: "would accept any host key"},
		{uri: "qemu+ssh://dev@lab1/system?known_hosts_verify=auto", wantErr: "would accept unknown host keys"},
		{uri: "qemu+ssh://dev@lab1/system?sshauth=password", wantErr: `sshauth method "password" is not supported`},
		{uri: "qemu+ssh://dev@lab1/system?netcat=nc", wantErr: `parameter "netcat" is not supported`},
		{uri: "qemu+ssh://dev@lab1/system?%zz", wantErr: "parameters do not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.uri, func(t *testing.T) {
			got, err := ParseURI(tt.uri)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "hint: ") {
					t.Fatalf("ParseURI = %+v, %v; want an error with %q and a hint", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.want.URI = tt.uri
			if got.URI != tt.want.URI || got.User != tt.want.User || got.Host != tt.want.Host || got.Port != tt.want.Port ||
				got.KeyFile != tt.want.KeyFile || !slices.Equal(got.KnownHosts, tt.want.KnownHosts) ||
				got.Socket != tt.want.Socket || got.Agent != tt.want.Agent {
				t.Errorf("ParseURI =\n%+v, want\n%+v", got, tt.want)
			}
		})
	}
}

func TestTargetNames(t *testing.T) {
	for _, tt := range []struct {
		t                Target
		known, addr, cmd string
	}{
		{Target{User: "dev", Host: "lab1", Port: 22}, "lab1", "lab1:22", "ssh dev@lab1"},
		{Target{User: "dev", Host: "::1", Port: 2222, KeyFile: "/k"}, "[::1]:2222", "[::1]:2222", "ssh -p 2222 -i /k dev@::1"},
	} {
		if got := tt.t.knownHostsName(); got != tt.known {
			t.Errorf("knownHostsName = %q, want %q", got, tt.known)
		}
		if got := tt.t.Addr(); got != tt.addr {
			t.Errorf("Addr = %q, want %q", got, tt.addr)
		}
		if got := tt.t.sshCommand(); got != tt.cmd {
			t.Errorf("sshCommand = %q, want %q", got, tt.cmd)
		}
	}
}

func TestIsRemote(t *testing.T) {
	for uri, want := range map[string]bool{"qemu+ssh://h/system": true, "qemu:///system": false, "qemu:///session": false, "%zz": false} {
		if IsRemote(uri) != want {
			t.Errorf("IsRemote(%q) = %v", uri, !want)
		}
	}
}
