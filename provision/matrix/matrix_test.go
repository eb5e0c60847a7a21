package matrix

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRunner records what ran where and how much ran at once. A cell's verdict comes from
// verdicts (default Passed); a kernel in badKernels fails to prepare. gate, when set, holds
// every Run until it is closed.
type fakeRunner struct {
	mu          sync.Mutex
	prepares    map[string]int
	order       []string // kernels in the order they were prepared
	prepared    map[string]bool
	runsBefore  []string // cells run before their kernel was prepared
	running     map[string]int
	maxRunning  map[string]int
	total, peak int
	ran         []Cell
	started     chan Cell
	gate        chan struct{}
	badKernels  map[string]bool
	preparing   int // Prepares at once now, and at most
	maxPrep     int
	verdicts    map[string]Verdict
}

func newFakeRunner() *fakeRunner {
	return &fakeRunner{prepares: map[string]int{}, prepared: map[string]bool{}, running: map[string]int{},
		maxRunning: map[string]int{}, started: make(chan Cell, 100), badKernels: map[string]bool{}, verdicts: map[string]Verdict{}}
}

func (f *fakeRunner) Prepare(ctx context.Context, kernel string) error {
	f.mu.Lock()
	f.preparing++
	f.maxPrep = max(f.maxPrep, f.preparing)
	f.mu.Unlock()
	time.Sleep(time.Millisecond) // let other cells and kernels arrive and wait
	f.mu.Lock()
	defer f.mu.Unlock()
	f.preparing--
	f.prepares[kernel]++
	f.order = append(f.order, kernel)
	if f.badKernels[kernel] {
		return errors.New("make failed")
	}
	f.prepared[kernel] = true
	return nil
}

func (f *fakeRunner) Run(ctx context.Context, cell Cell, host Host) Result {
	f.mu.Lock()
	if !f.prepared[cell.Kernel] {
		f.runsBefore = append(f.runsBefore, cell.String())
	}
	f.running[host.URI]++
	f.maxRunning[host.URI] = max(f.maxRunning[host.URI], f.running[host.URI])
	f.total++
	f.peak = max(f.peak, f.total)
	f.ran = append(f.ran, cell)
	f.mu.Unlock()
	f.started <- cell
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	f.running[host.URI]--
	f.total--
	v, ok := f.verdicts[cell.String()]
	f.mu.Unlock()
	if !ok {
		v = Passed
	}
	return Result{Verdict: v, Summary: string(v)}
}

func cells(kernels []string, modules ...string) []Cell {
	var cs []Cell
	for _, k := range kernels {
		for _, m := range modules {
			cs = append(cs, Cell{Kernel: k, Module: m})
		}
	}
	return cs
}

var small = VMSize{CPUs: 1, MemoryMiB: 1024}

func TestPlanCheck(t *testing.T) {
	host := []Host{{URI: "qemu:///system", CPUs: 2, MemoryMiB: 4096}}
	one := cells([]string{"sid"}, "m")
	for _, tt := range []struct {
		name string
		p    Plan
		want string
	}{
		{"fine", Plan{Cells: one, Hosts: host, Size: small}, ""},
		{"no cells", Plan{Hosts: host, Size: small}, "no cells"},
		{"no hosts", Plan{Cells: one, Size: small}, "no host"},
		{"negative jobs", Plan{Cells: one, Hosts: host, Size: small, Jobs: -1}, "--jobs -1"},
		{"VM too big", Plan{Cells: one, Hosts: host, Size: VMSize{CPUs: 4, MemoryMiB: 1024}}, "no host has room"},
		{"too much memory", Plan{Cells: one, Hosts: host, Size: VMSize{CPUs: 1, MemoryMiB: 8192}}, "no host has room"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Check()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "hint: ") {
				t.Errorf("Check = %v, want %q with a hint", err, tt.want)
			}
		})
	}
}

func TestSlots(t *testing.T) {
	for _, tt := range []struct {
		h    Host
		s    VMSize
		want int
	}{
		{Host{CPUs: 8, MemoryMiB: 16384}, VMSize{1, 1024}, 8}, // CPUs bound
		{Host{CPUs: 8, MemoryMiB: 3000}, VMSize{1, 1024}, 2},  // memory bound
		{Host{CPUs: 2, MemoryMiB: 16384}, VMSize{2, 512}, 1},  // a 2-CPU VM
		{Host{CPUs: 1, MemoryMiB: 16384}, VMSize{2, 512}, 0},  // too small
		{Host{CPUs: 4, MemoryMiB: 4096}, VMSize{0, 512}, 0},   // no size: nothing fits
	} {
		if got := slots(tt.h, tt.s); got != tt.want {
			t.Errorf("slots(%+v, %+v) = %d, want %d", tt.h, tt.s, got, tt.want)
		}
	}
}

// Every cell runs once, in its own slot: never more VMs on a host than it holds, never more
// than --jobs at once; each kernel is prepared once, before any of its cells runs; results
// come back in the cells' order.
func TestRunLimits(t *testing.T) {
	hosts := []Host{{URI: "a", CPUs: 2, MemoryMiB: 8192}, {URI: "b", CPUs: 1, MemoryMiB: 8192}}
	for _, tt := range []struct {
		name     string
		jobs     int
		wantPeak int
	}{
		{"as many as the hosts hold", 0, 3},
		{"--jobs 2", 2, 2},
		{"--jobs above the hosts' room", 10, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeRunner()
			f.gate = make(chan struct{})
			p := Plan{Cells: cells([]string{"sid", "trixie"}, "m1", "m2", "m3"), Hosts: hosts, Size: small, Jobs: tt.jobs}
			done := make(chan []Result)
			go func() {
				res, err := Run(t.Context(), p, f, nil)
				if err != nil {
					t.Error(err)
				}
				done <- res
			}()
			for range tt.wantPeak { // the first wave fills every slot it may
				<-f.started
			}
			close(f.gate)
			res := <-done
			if f.peak != tt.wantPeak {
				t.Errorf("%d cells ran at once, want %d", f.peak, tt.wantPeak)
			}
			if f.maxRunning["a"] > 2 || f.maxRunning["b"] > 1 {
				t.Errorf("VMs at once per host: %v, want a<=2, b<=1", f.maxRunning)
			}
			if f.prepares["sid"] != 1 || f.prepares["trixie"] != 1 || len(f.runsBefore) != 0 || f.maxPrep != 1 {
				t.Errorf("prepares %v (at most %d at once, want 1), cells run before their kernel: %v", f.prepares, f.maxPrep, f.runsBefore)
			}
			if len(res) != len(p.Cells) || len(f.ran) != len(p.Cells) {
				t.Fatalf("%d results, %d runs, want %d", len(res), len(f.ran), len(p.Cells))
			}
			for i, r := range res {
				if r.Cell != p.Cells[i] || r.Verdict != Passed || r.Host == "" {
					t.Errorf("result %d = %v %s on %q, want %v passed on a host", i, r.Cell, r.Verdict, r.Host, p.Cells[i])
				}
			}
		})
	}
}

// VMs go to the host with the smallest share of its room in use.
func TestRunSpreads(t *testing.T) {
	f := newFakeRunner()
	f.gate = make(chan struct{})
	hosts := []Host{{URI: "big", CPUs: 4, MemoryMiB: 8192}, {URI: "small", CPUs: 2, MemoryMiB: 8192}}
	p := Plan{Cells: cells([]string{"sid"}, "m1", "m2", "m3"), Hosts: hosts, Size: small}
	done := make(chan []Result)
	go func() {
		res, _ := Run(t.Context(), p, f, nil)
		done <- res
	}()
	for range 3 {
		<-f.started
	}
	close(f.gate)
	<-done
	// big (0/4) takes the first, small (0/2) the second, big (1/4 < 1/2) the third.
	if f.maxRunning["big"] != 2 || f.maxRunning["small"] != 1 {
		t.Errorf("VMs per host: %v, want big 2, small 1", f.maxRunning)
	}
}

// A kernel that does not build makes each of its cells an Error that says so, without a VM;
// the other kernels' cells run, and a failed cell stays failed.
func TestRunKernelFails(t *testing.T) {
	f := newFakeRunner()
	f.badKernels["trixie"] = true
	f.verdicts["sid × m2"] = Failed
	p := Plan{Cells: cells([]string{"sid", "trixie"}, "m1", "m2"), Hosts: []Host{{URI: "a", CPUs: 2, MemoryMiB: 4096}}, Size: small}
	var events []string
	res, err := Run(t.Context(), p, f, func(e Event) { events = append(events, e.Cell.String()+" "+e.State) })
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Verdict{"sid × m1": Passed, "sid × m2": Failed, "trixie × m1": Error, "trixie × m2": Error}
	for _, r := range res {
		if r.Verdict != want[r.Cell.String()] {
			t.Errorf("%v: %s, want %s", r.Cell, r.Verdict, want[r.Cell.String()])
		}
		if r.Verdict == Error && (!strings.Contains(r.Summary, "kernel trixie not built: make failed") || r.Host != "") {
			t.Errorf("%v: %q on %q, want the kernel's error and no host", r.Cell, r.Summary, r.Host)
		}
	}
	if f.prepares["trixie"] != 1 {
		t.Errorf("trixie prepared %d times, want once", f.prepares["trixie"])
	}
	for _, r := range f.ran {
		if r.Kernel == "trixie" {
			t.Errorf("%v ran on a kernel that did not build", r)
		}
	}
	if len(events) == 0 || !strings.Contains(strings.Join(events, "\n"), "sid × m2 failed") {
		t.Errorf("progress events: %v", events)
	}
}

// When the run is cancelled, the cells not started yet are Errors that say why, and Run
// returns once the running ones have ended.
func TestRunCancelled(t *testing.T) {
	f := newFakeRunner()
	f.gate = make(chan struct{})
	ctx, cancel := context.WithCancelCause(t.Context())
	p := Plan{Cells: cells([]string{"sid"}, "m1", "m2", "m3"), Hosts: []Host{{URI: "a", CPUs: 1, MemoryMiB: 4096}}, Size: small}
	done := make(chan []Result)
	go func() {
		res, _ := Run(ctx, p, f, nil)
		done <- res
	}()
	<-f.started
	cancel(fmt.Errorf("interrupted"))
	res := <-done
	if len(f.ran) != 1 {
		t.Errorf("%d cells ran, want 1", len(f.ran))
	}
	for _, r := range res {
		if r.Cell == f.ran[0] {
			continue
		}
		if r.Verdict != Error || !strings.Contains(r.Summary, "interrupted") {
			t.Errorf("%v: %s %q, want an Error saying it was interrupted", r.Cell, r.Verdict, r.Summary)
		}
	}
}

// Kernels are prepared one at a time in the order the plan first names them, whatever order
// the cells' goroutines start in.
func TestPrepareInPlanOrder(t *testing.T) {
	for range 20 {
		f := newFakeRunner()
		p := Plan{Cells: []Cell{{"trixie", "m1"}, {"sid", "m1"}, {"trixie", "m2"}, {"debug", "m1"}, {"sid", "m2"}},
			Hosts: []Host{{URI: "a", CPUs: 8, MemoryMiB: 16384}}, Size: small}
		if _, err := Run(t.Context(), p, f, nil); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(f.order, " "); got != "trixie sid debug" || f.maxPrep != 1 {
			t.Fatalf("kernels prepared in the order %q (at most %d at once), want \"trixie sid debug\" one at a time", got, f.maxPrep)
		}
	}
}
