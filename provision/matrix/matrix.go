// Package matrix runs modules across kernels and libvirt hosts in parallel (`kmodvm
// matrix`): each cell, a kernel and a module, is built and judged like `run` in a VM of its
// own on one of the hosts. A kernel is prepared (built, with its image) once, before the
// first of its cells, and shared by all of them; VMs are spread over the hosts by the CPUs
// and memory each has to spare.
package matrix

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Cell is one kernel and one module.
type Cell struct {
	Kernel string // the kernel's label: a suite (sid, trixie) or a config file
	Module string // the module's directory
}

func (c Cell) String() string { return c.Kernel + " × " + c.Module }

// Host is a libvirt host and what it can give to the matrix's VMs.
type Host struct {
	URI       string
	CPUs      int
	MemoryMiB int
}

// VMSize is what one cell's VM takes of a host.
type VMSize struct {
	CPUs      int
	MemoryMiB int
}

// Verdict is a cell's outcome.
type Verdict string

const (
	Passed Verdict = "passed" // built, loaded and judged clean
	Failed Verdict = "failed" // the module did not build, or its verdict was not clean
	Error  Verdict = "error"  // the cell could not be judged: its kernel did not build, its VM did not come up
)

// Result is what a cell came to.
type Result struct {
	Cell
	Host     string // the URI the cell ran on; "" when it never got a host
	Verdict  Verdict
	Summary  string // one line: the verdict's title, or what went wrong
	Log      string // the module's kernel log lines, or the build's diagnostics
	Duration time.Duration
	// ExitCode is the exit code `kmodvm run` gives the cell: 0 when it passed; the Runner
	// sets it (an Error the matrix makes has 0: its caller decides).
	ExitCode int
	// KernelRelease is the release of the kernel the cell ran on, when it got that far.
	KernelRelease string
}

// Runner does the work of the cells; the matrix only decides what runs where and when.
type Runner interface {
	// Prepare builds what every cell of kernel needs (the kernel, its image); it runs once
	// per kernel, before the first of its cells.
	Prepare(ctx context.Context, kernel string) error
	// Run builds and judges cell in a VM of its own on host, and removes the VM.
	Run(ctx context.Context, cell Cell, host Host) Result
}

// Event is a change a live progress display shows.
type Event struct {
	Cell    Cell
	Host    string
	State   string // "preparing", "running", or the verdict
	Summary string
}

// Plan is what a matrix run needs.
type Plan struct {
	Cells []Cell
	Hosts []Host
	Size  VMSize
	Jobs  int // at most this many cells at once; 0: as many as the hosts hold
}

// slots is how many VMs of size s host h holds at once.
func slots(h Host, s VMSize) int {
	if s.CPUs <= 0 || s.MemoryMiB <= 0 {
		return 0
	}
	return min(h.CPUs/s.CPUs, h.MemoryMiB/s.MemoryMiB)
}

// Check says what makes p impossible to run, nil when nothing does.
func (p Plan) Check() error {
	if len(p.Cells) == 0 {
		return errors.New("the matrix has no cells; hint: name module directories and at least one --suite or --config")
	}
	if len(p.Hosts) == 0 {
		return errors.New("the matrix has no host; hint: --host qemu:///system, or leave --host out for this machine")
	}
	if p.Jobs < 0 {
		return fmt.Errorf("--jobs %d: hint: give a positive number, or 0 for as many as the hosts hold", p.Jobs)
	}
	total := 0
	for _, h := range p.Hosts {
		total += slots(h, p.Size)
	}
	if total == 0 {
		return fmt.Errorf("no host has room for one VM of %d CPUs and %d MiB; hint: give the VMs fewer CPUs or less memory (vm.cpus, vm.memory in kmodvm.yaml), or add a bigger --host", p.Size.CPUs, p.Size.MemoryMiB)
	}
	return nil
}

// Run runs every cell of p and returns their results in the order of p.Cells. Kernels are
// prepared one at a time (a kernel build takes every core of this machine), each before the
// first of its cells takes a host's slot, so no VM slot waits on a build. A cell whose kernel
// failed to prepare is an Error without running; when ctx ends, the cells not started are
// Errors saying so. progress, if not nil, is called from one goroutine at a time.
func Run(ctx context.Context, p Plan, r Runner, progress func(Event)) ([]Result, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	say := func(e Event) {
		if progress != nil {
			mu.Lock()
			defer mu.Unlock()
			progress(e)
		}
	}
	sched := newScheduler(p)
	prep := startPreparer(ctx, p.Cells, r, say)
	results := make([]Result, len(p.Cells))
	var wg sync.WaitGroup
	for i, cell := range p.Cells {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runCell(ctx, cell, p.Hosts, r, prep, sched, say)
		}()
	}
	wg.Wait()
	<-prep.finished // a cancelled kernel build has stopped before Run returns
	return results, nil
}

// runCell prepares the cell's kernel (once for all its cells), waits for a host's slot and
// runs the cell there.
func runCell(ctx context.Context, cell Cell, hosts []Host, r Runner, prep *preparer, sched *scheduler, say func(Event)) Result {
	start := time.Now()
	fail := func(summary string) Result {
		say(Event{Cell: cell, State: string(Error), Summary: summary})
		return Result{Cell: cell, Verdict: Error, Summary: summary, Duration: time.Since(start)}
	}
	if err := prep.prepare(ctx, cell); err != nil {
		if ctx.Err() != nil {
			return fail("not run: " + context.Cause(ctx).Error())
		}
		return fail("kernel " + cell.Kernel + " not built: " + err.Error())
	}
	i, ok := sched.acquire(ctx)
	if !ok {
		return fail("not run: " + context.Cause(ctx).Error())
	}
	defer sched.release(i)
	host := hosts[i]
	say(Event{Cell: cell, Host: host.URI, State: "running"})
	res := r.Run(ctx, cell, host)
	res.Cell, res.Host = cell, host.URI
	if res.Duration == 0 {
		res.Duration = time.Since(start)
	}
	say(Event{Cell: cell, Host: host.URI, State: string(res.Verdict), Summary: res.Summary})
	return res
}

// preparer runs Prepare once per kernel, one kernel at a time, in the order the plan first
// names them (the user lists what matters first, and a cell's VM waits for no later
// kernel); the cells of a kernel wait for it and share its outcome.
type preparer struct {
	done     map[string]*prepared
	finished chan struct{} // closed when every kernel is prepared or given up
}

type prepared struct {
	ready chan struct{}
	err   error
}

// startPreparer prepares the kernels of cells in the background, in plan order, until ctx
// ends; a kernel not reached by then fails with ctx's cause.
func startPreparer(ctx context.Context, cells []Cell, r Runner, say func(Event)) *preparer {
	p := &preparer{done: map[string]*prepared{}, finished: make(chan struct{})}
	var order []Cell
	for _, c := range cells {
		if _, ok := p.done[c.Kernel]; !ok {
			p.done[c.Kernel] = &prepared{ready: make(chan struct{})}
			order = append(order, c)
		}
	}
	go func() {
		defer close(p.finished)
		for _, c := range order {
			pr := p.done[c.Kernel]
			if ctx.Err() != nil {
				pr.err = context.Cause(ctx)
			} else {
				say(Event{Cell: c, State: "preparing"})
				pr.err = r.Prepare(ctx, c.Kernel)
			}
			close(pr.ready)
		}
	}()
	return p
}

// prepare waits for the kernel of cell.
func (p *preparer) prepare(ctx context.Context, cell Cell) error {
	pr := p.done[cell.Kernel]
	select {
	case <-pr.ready:
		return pr.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// scheduler hands out hosts with a free slot, at most jobs at once, the least loaded host
// (by share of its slots in use) first.
type scheduler struct {
	free  chan struct{} // one token per cell that may run now
	mu    sync.Mutex
	slots []int
	used  []int
}

func newScheduler(p Plan) *scheduler {
	s := &scheduler{slots: make([]int, len(p.Hosts)), used: make([]int, len(p.Hosts))}
	total := 0
	for i, h := range p.Hosts {
		s.slots[i] = slots(h, p.Size)
		total += s.slots[i]
	}
	jobs := total
	if p.Jobs > 0 {
		jobs = min(p.Jobs, total)
	}
	s.free = make(chan struct{}, jobs)
	for range jobs {
		s.free <- struct{}{}
	}
	return s
}

// acquire waits for a token and returns the index of the host the cell runs on.
func (s *scheduler) acquire(ctx context.Context) (int, bool) {
	select {
	case <-s.free:
	case <-ctx.Done():
		return 0, false
	}
	if ctx.Err() != nil { // both were ready and select took the token
		s.free <- struct{}{}
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	best := -1
	for i := range s.slots {
		if s.used[i] >= s.slots[i] {
			continue
		}
		// Lower share in use wins: used[i]/slots[i] < used[best]/slots[best].
		if best < 0 || s.used[i]*s.slots[best] < s.used[best]*s.slots[i] {
			best = i
		}
	}
	s.used[best]++ // a token means some host has a free slot
	return best, true
}

func (s *scheduler) release(host int) {
	s.mu.Lock()
	s.used[host]--
	s.mu.Unlock()
	s.free <- struct{}{}
}
