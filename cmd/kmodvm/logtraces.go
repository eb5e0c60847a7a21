package main

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/sandbox"
)

// maxTraceWindow bounds the records traceDecoder keeps while it waits for a report to end:
// a report is a few dozen records, the log between reports is dropped from the front.
const maxTraceWindow = 2000

// traceDecoder sees the records `logs` prints and, once a crash report among them has
// ended (an oops, BUG, WARNING or panic at its "---[ end" line, a hung task at its
// "</TASK>", anything left at the end of the log), decodes it as run does: each frame's
// function and file:line, the top module frame's source line, Rust symbols demangled, the
// kernel's paths on the host.
type traceDecoder struct {
	sym    ktrace.Symbolizer // nil: frames keep the kernel's symbol+offset
	mapper ktrace.Mapper
	// modules are the module directories built on the host for the VM, by the modules they
	// made: a report's module says which one its relative paths ("warn.c:6") are in.
	modules map[string]module.HostBuilt
	budget  time.Duration // for symbolizing one report
	emit    func(ktrace.Trace, kmsg.Record)
	say     func(string) // the no-debug-information note, once

	window []kmsg.Record
	open   bool // a report that ends with "---[ end" has started
	noted  bool
}

// add takes the next record, raw (the symbolizer needs the kernel's own symbol names).
func (d *traceDecoder) add(ctx context.Context, r kmsg.Record) {
	d.window = append(d.window, r)
	if len(d.window) > maxTraceWindow {
		d.window = append(d.window[:0], d.window[len(d.window)-maxTraceWindow/2:]...)
	}
	text := strings.TrimSpace(r.Text)
	switch {
	case strings.Contains(text, "---[ cut here ]---") || strings.HasPrefix(text, "Oops:"):
		d.open = true
	case strings.Contains(text, "---[ end "), text == "</TASK>" && !d.open:
		d.flush(ctx)
	}
}

// flush decodes the reports in the records since the last flush and emits each.
func (d *traceDecoder) flush(ctx context.Context) {
	defer func() { d.window, d.open = d.window[:0], false }()
	traces := ktrace.Parse(d.window)
	if len(traces) == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, d.budget)
	defer cancel()
	named, placed := 0, 0
	for _, t := range traces {
		_ = t.Resolve(sctx, d.sym, d.mapperFor(t)) // a frame the symbolizer could not place keeps its offset
		frames := t.Frames
		if t.RIP != nil {
			frames = append([]ktrace.Frame{*t.RIP}, frames...)
		}
		for _, f := range frames {
			if f.Func != "" {
				named++
			}
			if f.File != "" {
				placed++
			}
		}
		d.emit(t, d.window[min(t.Record, len(d.window)-1)])
	}
	if named > 0 && placed == 0 && !d.noted {
		d.noted = true
		d.say(module.NoDebugInfoNote)
	}
}

// mapperFor is the mapper for t: the module its top module frame is in, when kmodvm built
// it on the host, is the one relative paths are in.
func (d *traceDecoder) mapperFor(t ktrace.Trace) ktrace.Mapper {
	m := d.mapper
	if f := t.TopModuleFrame(); f != nil {
		if b, ok := d.modules[f.Module]; ok {
			m.GuestModuleDir, m.HostModuleDir = b.Remote, b.Source
		}
	}
	return m
}

// newTraceDecoder is the decoder for the VM in's log, with the mapper its records get (logMapper):
// llvm-addr2line over its kernel's vmlinux (a debug kernel's) and the .ko files of the modules
// kmodvm built for it on the host.
func (a *app) newTraceDecoder(in *sandbox.Instance, m ktrace.Mapper, emit func(ktrace.Trace, kmsg.Record), say func(string)) *traceDecoder {
	d := &traceDecoder{mapper: m, budget: module.DefaultSymbolizeBudget, emit: emit, say: say, modules: map[string]module.HostBuilt{}}
	for _, b := range module.HostBuilds(in.HostBuildsDir()) {
		for _, name := range b.Modules {
			d.modules[name] = b
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(in.HostBuildsDir(), "*"))
	sym, err := kernel.NewSymbolizer(&images.Root{Dir: in.RootDir, Hash: in.RootHash}, in.Vmlinux, dirs...)
	if err != nil {
		a.log.Warn("crash traces in the log will have no file:line", "err", err)
		return d
	}
	d.sym = sym
	return d
}
