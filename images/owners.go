package images

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/kmodvm/kmodvm/images/userns"
	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// ownerCheck is what one path in a packed disk must be: sshd refuses keys that are not
// root's and private, and a root packed with the wrong id mapping shows here first.
type ownerCheck struct {
	Path     string
	UID, GID int
	Mode     uint32 // permission and setuid bits, as `stat` prints them in octal
}

var ownerChecks = []ownerCheck{
	{"/", 0, 0, 0o755},
	{"/root/.ssh", 0, 0, 0o700},
	{"/root/.ssh/authorized_keys", 0, 0, 0o600},
	{"/etc/ssh/ssh_host_ed25519_key", 0, 0, 0o600},
}

// checkOwners reads the owners and modes of ownerChecks in the packed image with debugfs:
// the disk is what the guest sees, whatever the host's view of the stage was.
func (b *diskBuild) checkOwners(image string, root *Root) error {
	debugfs, err := hosttool.Find("debugfs")
	if err != nil {
		return fmt.Errorf("check the packed disk: %w", err)
	}
	for _, c := range ownerChecks {
		var out, errOut bytes.Buffer
		cmd := exec.CommandContext(b.ctx, debugfs, "-R", "stat "+c.Path, image)
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("check the packed disk: debugfs stat %s: %v: %s", c.Path, err, errOut.String())
		}
		if err := c.verify(out.Bytes()); err != nil {
			fmt.Fprintf(b.logFile, "kmodvm: %v\n%s", err, out.String())
			entry := filepath.Dir(root.Dir)
			rm := userns.Argv(os.Geteuid(), []string{"rm", "-rf", "--", entry})
			return fmt.Errorf("disk build failed: %w: the toolchain root was unpacked with the wrong owners; hint: remove it with `%s` and run `kmodvm image build` again (full log in %s)",
				err, strings.Join(rm, " "), b.failedLog)
		}
	}
	return nil
}

var (
	debugfsMode  = regexp.MustCompile(`(?m)Mode:\s+0?([0-7]+)`)
	debugfsOwner = regexp.MustCompile(`(?m)User:\s+(\d+)\s+Group:\s+(\d+)`)
)

// verify compares debugfs's `stat` output with the check.
func (c ownerCheck) verify(stat []byte) error {
	m, o := debugfsMode.FindSubmatch(stat), debugfsOwner.FindSubmatch(stat)
	if m == nil || o == nil {
		return fmt.Errorf("%s is missing from the disk or debugfs printed no owner and mode", c.Path)
	}
	mode, err := strconv.ParseUint(string(m[1]), 8, 32)
	if err != nil {
		return fmt.Errorf("%s: debugfs mode %q: %w", c.Path, m[1], err)
	}
	uid, _ := strconv.Atoi(string(o[1]))
	gid, _ := strconv.Atoi(string(o[2]))
	if uid != c.UID || gid != c.GID || uint32(mode) != c.Mode {
		return fmt.Errorf("%s in the disk is %d:%d mode %04o, want %d:%d mode %04o", c.Path, uid, gid, mode, c.UID, c.GID, c.Mode)
	}
	return nil
}
