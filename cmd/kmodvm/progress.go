package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/kmodvm/kmodvm/provision/kernel"
)

// progress shows long work on stderr: a live bar on a terminal, and on a pipe (CI, logs)
// a line every so often, never a flood.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	tty      bool
	bar      *progressbar.ProgressBar
	lastLine time.Time
	lastPct  int
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

// Status prints one progress line ("==> booting ...").
func (p *progress) Status(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endBar()
	fmt.Fprintf(p.w, "==> %s\n", s)
}

// Kernel shows kernel build progress.
func (p *progress) Kernel(k kernel.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if k.Phase != "build" {
		p.endBar()
		fmt.Fprintf(p.w, "==> kernel: %s\n", k.Current)
		return
	}
	total := k.Total
	if total < k.Step {
		total = 0
	}
	if p.tty {
		if p.bar == nil {
			max := total
			if max == 0 {
				max = -1 // unknown: a spinner with a count
			}
			p.bar = progressbar.NewOptions(max,
				progressbar.OptionSetWriter(p.w), progressbar.OptionShowCount(),
				progressbar.OptionSetElapsedTime(true), progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
		}
		p.bar.Describe(fmt.Sprintf("kernel %-40.40s", k.Current))
		_ = p.bar.Set(k.Step)
		return
	}
	pct := -1
	if total > 0 {
		pct = k.Step * 100 / total
	}
	if time.Since(p.lastLine) < 30*time.Second && (pct < 0 || pct < p.lastPct+10) {
		return
	}
	p.lastLine, p.lastPct = time.Now(), pct
	if pct >= 0 {
		fmt.Fprintf(p.w, "==> kernel build: %d/%d steps (%d%%), %s elapsed, now %s\n", k.Step, total, pct, k.Elapsed.Round(time.Second), k.Current)
	} else {
		fmt.Fprintf(p.w, "==> kernel build: %d steps, %s elapsed, now %s\n", k.Step, k.Elapsed.Round(time.Second), k.Current)
	}
}

func (p *progress) endBar() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}

// Done ends a live bar, if any.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.endBar()
}
