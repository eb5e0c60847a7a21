// Package remotehost reaches a libvirt host over SSH (qemu+ssh:// URIs). One SSH connection
// per host carries everything kmodvm does there: the libvirt RPC (the daemon's unix socket,
// through direct-streamlocal; vm.Connect picks the socket), and connections to the loopback
// ports the host forwards to its guests (direct-tcpip). No program of kmodvm's runs on the host: it is a machine with
// sshd and libvirtd.
package remotehost

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Target is where a qemu+ssh:// URI points, with libvirt's URI parameters that kmodvm honours.
type Target struct {
	URI  string // as given, for messages
	User string // login user: the URI's, else the local user's name
	Host string
	Port int // 22 unless the URI names one
	// KeyFile is the private key to log in with (keyfile=); empty: the SSH agent, then
	// ~/.ssh/id_ed25519, id_ecdsa and id_rsa.
	KeyFile string
	// KnownHosts are the files the host key is checked against (known_hosts=, else
	// ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts, those that exist).
	KnownHosts []string
	// Socket is the daemon's socket on the host (socket=); empty: the caller's default.
	Socket string
	// Agent: whether the SSH agent may be used (sshauth= may leave it out).
	Agent bool
}

// IsRemote says whether uri names a remote host kmodvm reaches over SSH.
func IsRemote(uri string) bool {
	u, err := url.Parse(uri)
	return err == nil && u.Scheme == "qemu+ssh"
}

// ParseURI reads a qemu+ssh://[user@]host[:port]/system URI. Parameters that would weaken
// host key checking (no_verify=1, known_hosts_verify=ignore or auto) are refused, as are
// parameters kmodvm does not implement, each with a hint.
func ParseURI(uri string) (Target, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Target{}, fmt.Errorf("libvirt URI %q is not a URI: %w; hint: write it as qemu+ssh://user@host/system", uri, err)
	}
	if u.Scheme != "qemu+ssh" {
		return Target{}, fmt.Errorf("libvirt URI %q is not a qemu+ssh:// URI; hint: remote hosts are reached as qemu+ssh://user@host[:port]/system", uri)
	}
	if u.Hostname() == "" {
		return Target{}, fmt.Errorf("libvirt URI %q names no host; hint: qemu+ssh://user@host/system", uri)
	}
	if u.Path != "/system" {
		return Target{}, fmt.Errorf("libvirt URI %q: kmodvm drives a remote host's system daemon (path /system), not %q; hint: use qemu+ssh://%s/system, as a user in the host's libvirt group", uri, u.Path, u.Host)
	}
	t := Target{URI: uri, Host: u.Hostname(), Port: 22, Agent: true}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("libvirt URI %q: port %q is not a port number; hint: qemu+ssh://user@host:2222/system", uri, p)
		}
		t.Port = n
	}
	t.User = u.User.Username()
	if t.User == "" {
		cur, err := user.Current()
		if err != nil {
			return Target{}, fmt.Errorf("libvirt URI %q names no user and the local one is unknown: %w; hint: qemu+ssh://user@%s/system", uri, err, u.Host)
		}
		t.User = cur.Username
	}
	if _, ok := u.User.Password(); ok {
		return Target{}, fmt.Errorf("libvirt URI %q holds a password; kmodvm logs in with keys only; hint: drop the password and use keyfile= or the SSH agent", uri)
	}
	home, _ := os.UserHomeDir()
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Target{}, fmt.Errorf("libvirt URI %q: its parameters do not parse: %w; hint: write them as ?keyfile=PATH&known_hosts=PATH", uri, err)
	}
	for name, vals := range q {
		v := vals[len(vals)-1]
		switch name {
		case "keyfile":
			t.KeyFile = expandHome(v, home)
		case "known_hosts":
			t.KnownHosts = []string{expandHome(v, home)}
		case "socket":
			t.Socket = v
		case "no_verify":
			if v != "0" {
				return Target{}, fmt.Errorf("libvirt URI %q: no_verify=%s would accept any host key, and kmodvm always checks it; hint: drop no_verify and record the host's key once with `ssh -p %d %s@%s`, checking the fingerprint it shows", uri, v, t.Port, t.User, t.Host)
			}
		case "known_hosts_verify":
			if v != "normal" {
				return Target{}, fmt.Errorf("libvirt URI %q: known_hosts_verify=%s would accept unknown host keys, and kmodvm always checks them; hint: drop it and record the host's key once with `ssh -p %d %s@%s`, checking the fingerprint it shows", uri, v, t.Port, t.User, t.Host)
			}
		case "sshauth":
			t.Agent = false
			for _, m := range strings.Split(v, ",") {
				switch m {
				case "agent":
					t.Agent = true
				case "privkey":
				default:
					return Target{}, fmt.Errorf("libvirt URI %q: sshauth method %q is not supported: kmodvm logs in with keys only; hint: sshauth=agent,privkey", uri, m)
				}
			}
		default:
			known := []string{"keyfile", "known_hosts", "socket", "sshauth", "no_verify=0", "known_hosts_verify=normal"}
			slices.Sort(known)
			return Target{}, fmt.Errorf("libvirt URI %q: parameter %q is not supported by kmodvm; hint: supported are %s", uri, name, strings.Join(known, ", "))
		}
	}
	if t.KnownHosts == nil {
		for _, f := range []string{filepath.Join(home, ".ssh", "known_hosts"), "/etc/ssh/ssh_known_hosts"} {
			if _, err := os.Stat(f); err == nil {
				t.KnownHosts = append(t.KnownHosts, f)
			}
		}
	}
	return t, nil
}

// Addr is host:port for dialing.
func (t Target) Addr() string { return net.JoinHostPort(t.Host, strconv.Itoa(t.Port)) }

// knownHostsName is how known_hosts names the target: "host", or "[host]:port" off port 22.
func (t Target) knownHostsName() string {
	if t.Port == 22 {
		return t.Host
	}
	return "[" + t.Host + "]:" + strconv.Itoa(t.Port)
}

// sshCommand is the ssh command line that logs in to the target, for hints.
func (t Target) sshCommand() string {
	cmd := "ssh"
	if t.Port != 22 {
		cmd += " -p " + strconv.Itoa(t.Port)
	}
	if t.KeyFile != "" {
		cmd += " -i " + t.KeyFile
	}
	return cmd + " " + t.User + "@" + t.Host
}

func expandHome(p, home string) string {
	if rest, ok := strings.CutPrefix(p, "~/"); ok && home != "" {
		return filepath.Join(home, rest)
	}
	return p
}
