// Package treewatchtest helps tests of code that waits on treewatch: a manual clock, saves
// made as editors make them, and a wait until the watcher has counted one.
package treewatchtest

import (
	"sync"
	"time"

	"github.com/kmodvm/kmodvm/provision/treewatch"
)

// Clock is a treewatch.Clock whose time moves only when the test says so: its timers fire
// on Fire, never by themselves, so a test waits for events and never for time.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
}

var _ treewatch.Clock = (*Clock)(nil)

// New returns a clock that reads now until Fire moves it.
func New(now time.Time) *Clock { return &Clock{now: now} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer returns a timer that fires when Fire finds it the newest one armed.
func (c *Clock) NewTimer(d time.Duration) treewatch.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: make(chan time.Time, 1), at: c.now.Add(d), armed: true, clock: c}
	c.timers = append(c.timers, t)
	return t
}

// Fire fires the newest timer that is armed (neither stopped nor fired), moving the clock
// to its deadline as if that much time had passed; false when no timer is armed.
func (c *Clock) Fire() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(c.timers) - 1; i >= 0; i-- {
		t := c.timers[i]
		if !t.armed {
			continue
		}
		t.armed = false
		if t.at.After(c.now) {
			c.now = t.at
		}
		t.c <- c.now
		return true
	}
	return false
}

// Armed counts the timers that are armed.
func (c *Clock) Armed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if t.armed {
			n++
		}
	}
	return n
}

type timer struct {
	c     chan time.Time
	at    time.Time
	armed bool
	clock *Clock
}

func (t *timer) C() <-chan time.Time { return t.c }

func (t *timer) Stop() bool {
	t.clock.mu.Lock()
	defer t.clock.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}
