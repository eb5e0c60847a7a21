package images

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// InterruptGrace is how long an interrupted command gets to clean up before it is killed.
const InterruptGrace = 10 * time.Second

// InterruptOnCancel makes cmd (from exec.CommandContext) stop the way a terminal's Ctrl-C
// stops it when its context ends: SIGINT to every process of the command, so make deletes
// the half-written targets of the jobs it was running; then, if the command has not exited
// after grace, SIGKILL. exec.CommandContext's default, SIGKILL at once, leaves those
// targets behind with fresh mtimes, and the next make trusts them.
//
// bwrap processes in the tree are not signalled: bwrap does not forward signals and dies
// of SIGINT at once, and --die-with-parent would then SIGKILL the sandbox before make
// could clean up. They exit when the command inside does.
func InterruptOnCancel(cmd *exec.Cmd, grace time.Duration) {
	cmd.Cancel = func() error {
		return interruptTree(cmd.Process.Pid)
	}
	cmd.WaitDelay = grace
}

// KilledHard reports whether the command ended by SIGKILL (its own, or the one bwrap passes
// on as exit status 137): it had no chance to clean up after itself.
func KilledHard(cmd *exec.Cmd) bool {
	ps := cmd.ProcessState
	if ps == nil {
		return false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return false
	}
	if ws.Signaled() {
		return ws.Signal() == syscall.SIGKILL
	}
	return ws.ExitStatus() == 128+int(syscall.SIGKILL)
}

// interruptTree sends SIGINT to root and all its descendants, except bwrap processes.
func interruptTree(root int) error {
	procs, err := processTable()
	if err != nil {
		return fmt.Errorf("interrupt process %d: %w", root, err)
	}
	var errs []error
	for _, pid := range descendants(procs, root) {
		if procs[pid].comm == "bwrap" {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("interrupt process %d: %w", pid, err))
		}
	}
	return errors.Join(errs...)
}

type procInfo struct {
	ppid int
	comm string
}

// processTable reads the parent and name of every process from /proc.
func processTable() (map[int]procInfo, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	procs := make(map[int]procInfo, len(stats))
	for _, s := range stats {
		data, err := os.ReadFile(s)
		if err != nil {
			continue // exited meanwhile
		}
		pid, info, ok := parseStat(data)
		if ok {
			procs[pid] = info
		}
	}
	if len(procs) == 0 {
		return nil, errors.New("no processes in /proc")
	}
	return procs, nil
}

// parseStat reads pid, comm and ppid from a /proc/PID/stat line: "pid (comm) state ppid ...";
// comm may itself hold spaces and parentheses.
func parseStat(data []byte) (int, procInfo, bool) {
	open := bytes.IndexByte(data, '(')
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return 0, procInfo{}, false
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(data[:open])))
	if err != nil {
		return 0, procInfo{}, false
	}
	rest := bytes.Fields(data[end+1:])
	if len(rest) < 2 {
		return 0, procInfo{}, false
	}
	ppid, err := strconv.Atoi(string(rest[1]))
	if err != nil {
		return 0, procInfo{}, false
	}
	return pid, procInfo{ppid: ppid, comm: string(data[open+1 : end])}, true
}

// descendants returns root and every process below it, parents first.
func descendants(procs map[int]procInfo, root int) []int {
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}
