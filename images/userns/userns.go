// Package userns runs host commands as root of a user namespace whose root is the invoking
// user and whose other ids are the user's subordinate ids (newuidmap/newgidmap, /etc/subuid).
// That is how an ordinary user unpacks, stages and packs a guest root whose files belong to
// root and system users: inside the namespace they do, on the host they belong to the user
// (root's files) or to a subordinate id. As root, commands run as they are.
package userns

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// Needed says whether commands need the namespace: kmodvm does not run as root.
func Needed() bool { return os.Geteuid() != 0 }

// Argv is the command line that runs argv as namespace root when euid is not 0: unshare
// maps root to the user and ids 1..65535 to the user's first subordinate ids. argv[0] is
// found with hosttool as root; inside the namespace PATH (see hosttool.Env) finds it.
func Argv(euid int, argv []string) []string {
	if euid == 0 {
		return argv
	}
	return append([]string{"unshare", "--map-root-user", "--map-auto", "--"}, argv...)
}

// Command returns a command running argv as namespace root (see Argv), with the sbin
// directories on PATH, in its own process group that cancelling ctx kills as a whole.
func Command(ctx context.Context, argv ...string) *exec.Cmd {
	full := Argv(os.Geteuid(), argv)
	cmd := hosttool.Command(ctx, full[0], full[1:]...)
	cmd.Env = hosttool.Env(nil)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
