package images

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// debugfsStat is `debugfs -R "stat PATH"` output as debugfs 1.47 prints it.
func debugfsStat(mode string, uid, gid string) string {
	return "Inode: 286   Type: regular    Mode:  " + mode + "   Flags: 0x80000\n" +
		"Generation: 0    Version: 0x00000000:00000000\n" +
		"User:     " + uid + "   Group:     " + gid + "   Project:     0   Size: 2\n" +
		"File ACL: 0\nLinks: 1   Blockcount: 8\n"
}

func TestOwnerCheckVerify(t *testing.T) {
	key := ownerCheck{"/root/.ssh/authorized_keys", 0, 0, 0o600}
	tests := []struct {
		name    string
		check   ownerCheck
		stat    string
		wantErr string
	}{
		{"root's private key", key, debugfsStat("0600", "0", "0"), ""},
		{"the user's uid leaked", key, debugfsStat("0600", "1000", "1000"), "is 1000:1000 mode 0600, want 0:0 mode 0600"},
		{"a subordinate uid", key, debugfsStat("0600", "100000", "0"), "is 100000:0"},
		{"readable by others", key, debugfsStat("0644", "0", "0"), "mode 0644, want 0:0 mode 0600"},
		{"setuid kept", ownerCheck{"/usr/bin/su", 0, 0, 0o4755}, debugfsStat("04755", "0", "0"), ""},
		{"setuid lost", ownerCheck{"/usr/bin/su", 0, 0, 0o4755}, debugfsStat("0755", "0", "0"), "mode 0755, want 0:0 mode 4755"},
		{"missing", key, "/root/.ssh/authorized_keys: File not found by ext2_lookup \n", "missing from the disk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check.verify([]byte(tt.stat))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("verify = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("verify = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// The unpack command keeps the stream's owners and modes and leaves device nodes out.
func TestTarArgs(t *testing.T) {
	got := strings.Join(tarArgs("/c/roots/x/root"), " ")
	for _, want := range []string{"--numeric-owner", "-xpf -", "-C /c/roots/x/root", "--exclude=./dev/*"} {
		if !strings.Contains(got, want) {
			t.Errorf("tarArgs = %q, want %q in it", got, want)
		}
	}
}

// runPipe gives each side's error, and a producer that fails stops the consumer.
func TestRunPipe(t *testing.T) {
	tests := []struct {
		name               string
		producer, consumer string
		wantProd, wantCons bool // errors expected
	}{
		{"both succeed", "printf 'a\\nb\\n'", "test \"$(wc -l)\" -eq 2", false, false},
		{"producer fails: consumer killed, not left waiting", "echo partial; exit 3", "cat >/dev/null; sleep 60", true, false},
		{"consumer fails: the producer dies on the closed pipe", "yes", "exit 4", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := exec.Command("sh", "-c", tt.producer)
			c := exec.Command("sh", "-c", tt.consumer)
			setGroup(p)
			setGroup(c)
			prodErr, consErr := runPipe(p, c)
			if (prodErr != nil) != tt.wantProd || (consErr != nil) != tt.wantCons {
				t.Fatalf("runPipe = %v, %v; want errors %v, %v", prodErr, consErr, tt.wantProd, tt.wantCons)
			}
		})
	}
}

func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}
