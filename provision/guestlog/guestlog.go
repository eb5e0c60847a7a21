// Package guestlog reads the guest's kernel log over SSH, for `kmodvm logs` and for the
// module runner: the shell functions the guest runs (kmsg.sh, read.sh) and the one reader of
// their output, which counts the records the guest overwrote before they were read.
package guestlog

import (
	"bufio"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/vm/shellquote"
)

// Functions are the shell functions kmsg_drain and kmsg_follow (kmsg.sh). A guest script that
// reads the kernel log starts with them.
//
//go:embed kmsg.sh
var Functions string

//go:embed read.sh
var readScript string

// Device is the guest's kernel log.
const Device = "/dev/kmsg"

// Execer runs a command in the guest (sshclient.Client does).
type Execer interface {
	Run(ctx context.Context, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
}

// Command is the guest command line that runs script (its text, run after Functions) with
// args as its positional parameters and env as its environment, every value quoted once.
// name is $0 (what ps shows).
//
// The scripts are POSIX sh, but bash runs them: dash's read builtin reads one byte per
// read(2), and a sysctl file such as /proc/sys/kernel/tainted answers any read at a
// non-zero offset with end-of-file, so dash reads "4" of "4096". bash reads the line
// whole (Debian's guest has bash: it is essential).
func Command(env map[string]string, script, name string, args ...string) string {
	cmd := ""
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd += k + "=" + shellquote.Quote(env[k]) + " "
	}
	return cmd + "bash -c " + shellquote.Join(append([]string{Functions + "\n" + script, name}, args...)...)
}

// Read runs the kernel log reader in the guest on dev (Device, or a test's file): a snapshot
// of what the log holds, or with follow every new record until ctx ends or the session does.
// It calls emit for each record and lost for each gap (Scan). It returns the reader's exit
// status and the session's error, or the scanner's (a record too long to hold).
func Read(ctx context.Context, g Execer, dev string, follow bool, emit func(kmsg.Record), lost func(from, n uint64)) (int, error) {
	mode := "snapshot"
	if follow {
		mode = "follow"
	}
	pr, pw := io.Pipe()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	type ended struct {
		code int
		err  error
	}
	done := make(chan ended, 1)
	go func() {
		code, err := g.Run(sctx, Command(map[string]string{"KMSG": dev}, readScript, "kmodvm-log", mode), nil, pw, io.Discard)
		pw.CloseWithError(err)
		done <- ended{code, err}
	}()
	var sc Scanner
	serr := sc.Scan(pr, emit, lost)
	stop() // the session has ended, or the scanner gave up on a record too long to hold
	pr.Close()
	e := <-done
	if errors.Is(serr, bufio.ErrTooLong) {
		return e.code, fmt.Errorf("read the guest's kernel log: %w", serr)
	}
	return e.code, e.err
}

// Scanner reads /dev/kmsg lines and tells the records lost between them: the kernel numbers
// its records, so a gap in the numbers of records read in order is what the guest overwrote
// before they were read. The zero Scanner expects any first record (where the log starts is
// no loss); Scanner{Next: n, Started: true} expects record n first.
type Scanner struct {
	Next    uint64 // the sequence number expected next
	Started bool   // Next is known
}

// Record takes one record read in order: it returns the n records from seq `from` on lost
// before it (n = 0: none).
func (s *Scanner) Record(rec kmsg.Record) (from, n uint64) {
	if s.Started && rec.Seq > s.Next {
		from, n = s.Next, rec.Seq-s.Next
	}
	s.Started, s.Next = true, rec.Seq+1
	return from, n
}

// Scan emits the records of the /dev/kmsg lines read from r until it ends, and calls lost for
// each gap before one. It holds one line at a time, however long the stream.
func (s *Scanner) Scan(r io.Reader, emit func(kmsg.Record), lost func(from, n uint64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		rec, ok := kmsg.ParseKmsgLine(sc.Text())
		if !ok {
			continue
		}
		if from, n := s.Record(rec); n > 0 {
			lost(from, n)
		}
		emit(rec)
	}
	return sc.Err()
}
