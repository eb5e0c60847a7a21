package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// cancelOnSignals returns a context that the first signal from sigs cancels: kmodvm then
// cleans up (stops the guest's job, removes what it half made), which may take seconds. A
// second signal means the user will not wait for that: it says so on stderr and calls
// exit(exitInterrupted) at once. stop ends the watch (call it once run is done).
func cancelOnSignals(parent context.Context, sigs <-chan os.Signal, stderr io.Writer, exit func(int)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			fmt.Fprintf(stderr, "kmodvm: %v again: exiting now, without finishing the cleanup (see `kmodvm status`)\n", sig)
			exit(exitInterrupted)
		case <-done:
		}
	}()
	return ctx, func() { close(done); cancel() }
}
