package module

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startJob runs guestJob(cmd) in a session of its own, as sshd does, with the job file at
// jf instead of /run.
func startJob(t *testing.T, jf, cmd string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	var out strings.Builder
	c := exec.Command("/bin/sh", "-c", strings.ReplaceAll(guestJob(cmd), jobFile, jf))
	c.Stdout, c.Stderr = &out, &out
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-c.Process.Pid, syscall.SIGKILL); c.Wait() })
	return c, &out
}

func waitJobFile(t *testing.T, jf string, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(jf); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(pid) {
			return
		}
	}
	t.Fatalf("the job file never named %d", pid)
}

// TestGuestJobStopsTheLeftover: a job an earlier run left (its connection cut) is stopped
// when the next job starts, and its exit does not take the new job's file with it.
func TestGuestJobStopsTheLeftover(t *testing.T) {
	jf := filepath.Join(t.TempDir(), "kmodvm.job")
	old, _ := startJob(t, jf, "sleep 20")
	waitJobFile(t, jf, old.Process.Pid)

	cur, out := startJob(t, jf, "sleep 0.5; cat "+jf)
	done := make(chan error, 1)
	go func() { done <- old.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the leftover job was not stopped")
	}
	if err := cur.Wait(); err != nil {
		t.Fatalf("the new job: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(out.String()), strconv.Itoa(cur.Process.Pid); got != want {
		t.Errorf("during the new job the job file said %q, want its own pid %s", got, want)
	}
	if _, err := os.Stat(jf); !os.IsNotExist(err) {
		t.Errorf("the job file outlives the job: %v", err)
	}
}

// TestAbandonScript stops the job's whole process group and removes the file; with no job it
// does nothing and succeeds.
func TestAbandonScript(t *testing.T) {
	jf := filepath.Join(t.TempDir(), "kmodvm.job")
	abandon := func() {
		t.Helper()
		if out, err := exec.Command("/bin/sh", "-c", strings.ReplaceAll(abandonScript, jobFile, jf)).CombinedOutput(); err != nil {
			t.Fatalf("abandon: %v\n%s", err, out)
		}
	}
	abandon() // no job
	job, _ := startJob(t, jf, "sleep 20 & sleep 20; wait")
	waitJobFile(t, jf, job.Process.Pid)
	abandon()
	if err := job.Wait(); err == nil {
		t.Error("the job exited 0 after abandon, want killed")
	}
	// The group's other processes got the signal too; they may take a moment to go.
	for deadline := time.Now().Add(10 * time.Second); syscall.Kill(-job.Process.Pid, 0) != syscall.ESRCH; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("processes of the job's group still run 10 s after abandon")
		}
	}
	if _, err := os.Stat(jf); !os.IsNotExist(err) {
		t.Errorf("the job file is left: %v", err)
	}
}
