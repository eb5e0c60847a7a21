package module

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kmodvm/kmodvm/provision/ktrace"
)

// DefaultSymbolizeBudget is how long a run may spend symbolizing its traces, all of them:
// a slow or stuck symbolizer must not hang the run, whose verdict is already made.
const DefaultSymbolizeBudget = 5 * time.Second

// NoDebugInfoNote is the note a run's result carries when its traces name functions but no
// frame got a file:line because there was no debug information to read it from.
const NoDebugInfoNote = "the trace frames have no file:line: the kernel was built without debug information; " +
	"hint: remove `kernel.debug: false` from kmodvm.yaml (the debug kernel is the default) and run kmodvm up again"

// mapper is the Runner's Mapper with the module's dirs of this run: remote in the guest,
// hostDir on the host.
func (r *Runner) mapper(remote, hostDir string) ktrace.Mapper {
	m := r.Mapper
	m.GuestModuleDir, m.HostModuleDir = remote, hostDir
	return m
}

// decodeTraces reads the crash traces out of each step's kernel log into Step.Traces and
// resolves them (source positions, host paths) within the symbolize budget; the paths in
// the findings' titles are mapped to the host too. It returns the
// notes the result gets, each at most once: no debug information, a symbolizer that
// failed, a budget that ran out.
func (r *Runner) decodeTraces(ctx context.Context, steps []Step, remote, hostDir string) []string {
	m := r.mapper(remote, hostDir)
	budget := r.symbolizeBudget
	if budget <= 0 {
		budget = DefaultSymbolizeBudget
	}
	sctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var sym ktrace.Symbolizer
	rec := &recordingSymbolizer{s: r.Symbolizer}
	if r.Symbolizer != nil {
		sym = rec
	}
	named, placed := 0, 0 // frames that name a function; those that got a file:line
	count := func(f *ktrace.Frame) {
		if f.Func != "" {
			named++
		}
		if f.File != "" {
			placed++
		}
	}
	for i := range steps {
		for j, f := range steps[i].Findings {
			steps[i].Findings[j].Title = m.MapText(f.Title)
		}
		for _, t := range ktrace.Parse(steps[i].records) {
			// Resolve's errors are the symbolizer's: recorded by rec, and a trace is
			// worth showing without its file:line.
			_ = t.Resolve(sctx, sym, m)
			if t.RIP != nil {
				count(t.RIP)
			}
			for j := range t.Frames {
				count(&t.Frames[j])
			}
			steps[i].Traces = append(steps[i].Traces, t)
		}
	}
	if named == 0 {
		return nil
	}
	var notes []string
	timedOut := errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	if timedOut {
		notes = append(notes, fmt.Sprintf("symbolizing the trace frames took longer than %s and was stopped: the frames it did not reach have no file:line", budget))
	}
	switch {
	case rec.failed != nil:
		notes = append(notes, fmt.Sprintf("some trace frames have no file:line: %v", rec.failed))
	case placed == 0 && !timedOut:
		notes = append(notes, NoDebugInfoNote)
	}
	return notes
}

// recordingSymbolizer passes queries on to s and keeps the first failure that is not a
// missing debug information (ErrNoLine, ErrNoObject) or the end of the budget.
type recordingSymbolizer struct {
	s      ktrace.Symbolizer
	mu     sync.Mutex
	failed error
}

func (r *recordingSymbolizer) Symbolize(ctx context.Context, module string, queries []ktrace.Query) ([][]ktrace.Source, error) {
	srcs, err := r.s.Symbolize(ctx, module, queries)
	if err != nil && ctx.Err() == nil && !errors.Is(err, ktrace.ErrNoLine) && !errors.Is(err, ktrace.ErrNoObject) {
		r.mu.Lock()
		if r.failed == nil {
			r.failed = err
		}
		r.mu.Unlock()
	}
	return srcs, err
}
