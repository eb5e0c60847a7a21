package main

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The first signal cancels the context (cleanup runs); the second exits at once with 130 and
// one line on stderr, whatever the cleanup is doing.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	sigs := make(chan os.Signal, 2)
	var stderr lockedBuffer
	exited := make(chan int, 1)
	ctx, stop := cancelOnSignals(context.Background(), sigs, &stderr, func(code int) { exited <- code })
	defer stop()

	sigs <- os.Interrupt
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the first signal did not cancel the context")
	}
	select {
	case code := <-exited:
		t.Fatalf("exit(%d) after the first signal, want cleanup to run", code)
	default:
	}

	sigs <- syscall.SIGTERM
	select {
	case code := <-exited:
		if code != 130 {
			t.Errorf("exit code %d, want 130", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second signal did not exit")
	}
	if out := stderr.String(); strings.Count(out, "\n") != 1 || !strings.Contains(out, "terminated again") {
		t.Errorf("stderr = %q, want one line naming the signal", out)
	}
}

// The CLI's run path, cancelled by an injected signal, exits 130 and says it was interrupted.
func TestRunInterruptedBySignal(t *testing.T) {
	isolate(t)
	t.Chdir(t.TempDir())
	sigs := make(chan os.Signal, 2)
	ctx, stop := cancelOnSignals(context.Background(), sigs, &lockedBuffer{}, func(code int) { t.Errorf("exit(%d)", code) })
	defer stop()
	sigs <- os.Interrupt
	<-ctx.Done()
	var out, errb strings.Builder
	if code := run(ctx, []string{"status", "--uri", nowhereURI(t)}, strings.NewReader(""), &out, &errb); code != 130 {
		t.Errorf("code = %d, want 130; stderr: %s", code, errb.String())
	}
	if !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("stderr does not say interrupted:\n%s", errb.String())
	}
}
