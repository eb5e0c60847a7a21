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

// fakeDD writes a dd that acts as /dev/kmsg's reader after an overrun: its first run prints
// records 1-2 and fails with EPIPE's message, the next prints 7-8 and fails as at the end of
// the log (EAGAIN). kmsg_drain must run it again after the first and stop after the second.
func fakeDD(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	state := filepath.Join(bin, "runs")
	script := `#!/bin/sh
n=0; [ -f ` + state + ` ] && read -r n < ` + state + `
echo $((n + 1)) > ` + state + `
case $n in
0) printf '6,1,1,-;a\n6,2,2,-;b\n'; echo "dd: error reading 'standard input': Broken pipe" >&2; exit 1 ;;
1) printf '6,7,7,-;g\n6,8,8,-;h\n'; echo "dd: error reading 'standard input': Resource temporarily unavailable" >&2; exit 1 ;;
*) echo "dd: ran again after the end" >&2; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "dd"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// After an overrun the snapshot reads on, and the gap is reported as lost records.
func TestReadSnapshotAfterOverrun(t *testing.T) {
	bin := fakeDD(t)
	dev := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	var lost []lostRange
	_, err := Read(context.Background(), localShell{bin + ":" + os.Getenv("PATH")}, dev, false,
		func(r kmsg.Record) { got = append(got, r.Seq) },
		func(from, n uint64) { lost = append(lost, lostRange{from, n}) })
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != "[1 2 7 8]" || fmt.Sprint(lost) != "[{3 4}]" {
		t.Errorf("records %v lost %v, want [1 2 7 8] and [{3 4}]", got, lost)
	}
}

// follow reads on after cat ends with a read error, and ends with cat's status otherwise.
func TestFollowReadsOnAfterAReadError(t *testing.T) {
	bin := t.TempDir()
	state := filepath.Join(bin, "runs")
	cat := `#!/bin/sh
n=0; [ -f ` + state + ` ] && read -r n < ` + state + `
echo $((n + 1)) > ` + state + `
case $n in
0) printf '6,1,1,-;a\n'; exit 1 ;;
*) printf '6,5,1,-;e\n'; exit 3 ;;
esac
`
	if err := os.WriteFile(filepath.Join(bin, "cat"), []byte(cat), 0o755); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(t.TempDir(), "kmsg")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	var lost []lostRange
	code, err := Read(context.Background(), localShell{bin + ":" + os.Getenv("PATH")}, dev, true,
		func(r kmsg.Record) { got = append(got, r.Seq) },
		func(from, n uint64) { lost = append(lost, lostRange{from, n}) })
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
