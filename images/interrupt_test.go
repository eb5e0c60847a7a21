package images

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startInterruptible starts argv with InterruptOnCancel and returns once it printed "ready".
func startInterruptible(t *testing.T, ctx context.Context, grace time.Duration, argv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	InterruptOnCancel(cmd, grace)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("command said %q, %v before it was ready", line, err)
	}
	return cmd
}

// A cancelled command is interrupted (SIGINT to it and its children, like Ctrl-C) and can
// clean up, even below a parent that would die of SIGINT, when that parent is bwrap.
func TestInterruptOnCancelLetsTheCommandCleanUp(t *testing.T) {
	dir := t.TempDir()
	// A copy of sh named bwrap stands in for bwrap: it must not be signalled (it would die
	// of SIGINT and never write parent-done).
	bwrap := filepath.Join(dir, "bwrap")
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	data, err := os.ReadFile(sh)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bwrap, data, 0o755); err != nil {
		t.Fatal(err)
	}
	child := `trap 'echo cleaned > ` + dir + `/target-removed; exit 130' INT; echo ready; while :; do sleep 1; done`
	parent := `sh -c "$1"; echo $? > ` + dir + `/parent-done`
	ctx, cancel := context.WithCancel(context.Background())
	cmd := startInterruptible(t, ctx, time.Minute, bwrap, "-c", parent, "bwrap", child)
	cancel()
	_ = cmd.Wait()
	if KilledHard(cmd) {
		t.Errorf("the command was killed, not interrupted")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "target-removed")); err != nil || strings.TrimSpace(string(b)) != "cleaned" {
		t.Errorf("the command did not clean up: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "parent-done")); err != nil || strings.TrimSpace(string(b)) != "130" {
		t.Errorf("the bwrap stand-in did not outlive its child: %q, %v", b, err)
	}
}

// A command that ignores SIGINT is killed once the grace period is over.
func TestInterruptOnCancelKillsAfterGrace(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := startInterruptible(t, ctx, 50*time.Millisecond, "sh", "-c", `trap '' INT; echo ready; while :; do sleep 1; done`)
	cancel()
	_ = cmd.Wait()
	if !KilledHard(cmd) {
		t.Errorf("a command ignoring SIGINT was not killed: %v", cmd.ProcessState)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		line string
		pid  int
		info procInfo
		ok   bool
	}{
		{"123 (make) S 45 123 45 0 -1", 123, procInfo{ppid: 45, comm: "make"}, true},
		{"7 (a (b) c) R 1 7 7", 7, procInfo{ppid: 1, comm: "a (b) c"}, true},
		{"garbage", 0, procInfo{}, false},
		{"8 (x)", 0, procInfo{}, false},
	}
	for _, tt := range tests {
		pid, info, ok := parseStat([]byte(tt.line))
		if pid != tt.pid || info != tt.info || ok != tt.ok {
			t.Errorf("parseStat(%q) = %d, %+v, %v; want %d, %+v, %v", tt.line, pid, info, ok, tt.pid, tt.info, tt.ok)
		}
	}
}

func TestDescendants(t *testing.T) {
	procs := map[int]procInfo{1: {0, "init"}, 10: {1, "bwrap"}, 11: {10, "bwrap"}, 12: {11, "make"}, 13: {12, "cc"}, 20: {1, "other"}}
	got := descendants(procs, 10)
	if len(got) != 4 || got[0] != 10 || got[1] != 11 || got[2] != 12 || got[3] != 13 {
		t.Errorf("descendants = %v", got)
	}
}
