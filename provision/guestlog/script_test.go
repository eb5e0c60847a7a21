package guestlog

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/kmsg"
)

// localShell runs guest commands with the local /bin/sh and a PATH that the test chooses.
type localShell struct{ path string }

func (l localShell) Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	c := exec.CommandContext(ctx, "/bin/sh", "-c", cmd)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	c.Env = []string{"PATH=" + l.path}
	err := c.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), nil
	}
	return 0, err
}

// A snapshot of a log file prints every record, in order, with no loss.
func TestReadSnapshot(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(dev, []byte("6,1,10,-;a\n6,2,20,-;b\n SUBSYSTEM=x\n4,3,30,-;c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	code, err := Read(context.Background(), localShell{os.Getenv("PATH")}, dev, false,
		func(r kmsg.Record) { got = append(got, fmt.Sprint(r.Seq, r.Text)) },
		func(from, n uint64) { t.Errorf("lost %d from %d", n, from) })
	if err != nil || code != 0 {
		t.Fatalf("code %d, err %v", code, err)
	}
	if fmt.Sprint(got) != "[1a 2b 3c]" {
		t.Errorf("records %v", got)
	}
}

// fakeTool writes a command name into a new bin dir whose runs go through the cases of
// script's `case $n in` in turn (n counts the runs from 0), and returns the dir.
func fakeTool(t *testing.T, name, cases string) string {
	t.Helper()
	bin := t.TempDir()
	state := filepath.Join(bin, "runs")
	script := "#!/bin/sh\nn=0; [ -f " + state + " ] && read -r n < " + state + "\necho $((n + 1)) > " + state + "\ncase $n in\n" + cases + "esac\n"
	if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// readWith runs Read on an empty log file with bin first on PATH.
func readWith(t *testing.T, bin string, follow bool) (seqs []uint64, lost []lostRange, code int, err error) {
	t.Helper()
	dev := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, err = Read(context.Background(), localShell{bin + ":" + os.Getenv("PATH")}, dev, follow,
		func(r kmsg.Record) { seqs = append(seqs, r.Seq) },
		func(from, n uint64) { lost = append(lost, lostRange{from, n}) })
	return seqs, lost, code, err
}

// After an overrun the snapshot reads on, and the gap is reported as lost records: the fake
// dd acts as /dev/kmsg's reader after an overrun (EPIPE's message), then at the end of the
// log (EAGAIN's). kmsg_drain must run it again after the first and stop after the second.
func TestReadSnapshotAfterOverrun(t *testing.T) {
	bin := fakeTool(t, "dd", `0) printf '6,1,1,-;a\n6,2,2,-;b\n'; echo "dd: error reading 'standard input': Broken pipe" >&2; exit 1 ;;
1) printf '6,7,7,-;g\n6,8,8,-;h\n'; echo "dd: error reading 'standard input': Resource temporarily unavailable" >&2; exit 1 ;;
*) echo "dd: ran again after the end" >&2; exit 1 ;;
`)
	got, lost, _, err := readWith(t, bin, false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 2 7 8]" || fmt.Sprint(lost) != "[{3 4}]" {
		t.Errorf("records %v lost %v, want [1 2 7 8] and [{3 4}]", got, lost)
	}
}

// follow reads on after cat ends with a read error, and ends with cat's status otherwise.
func TestFollowReadsOnAfterAReadError(t *testing.T) {
	bin := fakeTool(t, "cat", `0) printf '6,1,1,-;a\n'; exit 1 ;;
*) printf '6,5,1,-;e\n'; exit 3 ;;
`)
	got, lost, code, err := readWith(t, bin, true)
	if err != nil || code != 3 {
		t.Fatalf("code %d err %v, want 3 and no error", code, err)
	}
	if fmt.Sprint(got) != "[1 5]" || fmt.Sprint(lost) != "[{2 3}]" {
		t.Errorf("records %v lost %v", got, lost)
	}
}

// A record longer than the scanner holds is an error, not a silent end.
func TestReadTooLong(t *testing.T) {
	dev := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(dev, []byte("6,1,1,-;"+strings.Repeat("x", 2<<20)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Read(context.Background(), localShell{os.Getenv("PATH")}, dev, false, func(kmsg.Record) {}, func(uint64, uint64) {})
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("err = %v, want token too long", err)
	}
}

// Command quotes every value once: the script gets its arguments and environment back
// exactly, whatever they hold.
func TestCommandQuotes(t *testing.T) {
	odd := `it's "odd" $(x) ; \n`
	cmd := Command(map[string]string{"B": odd, "A": "a"}, `printf '%s|' "$0" "$@" "$A" "$B"`, "name", odd, "")
	var out bytes.Buffer
	if _, err := (localShell{os.Getenv("PATH")}).Run(context.Background(), cmd, nil, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := "name|" + odd + "||a|" + odd + "|"; out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
}
