// Package treewatch watches a module directory and says when it changed in a way a sync
// would carry: file events under it, less what the sync skips (build outputs, .git/,
// target/, .kmodvmignore patterns) and the temporary files editors write while they save,
// with a burst of events (one save, a `git checkout`) coalesced into one Batch.
//
// It reads inotify through github.com/fsnotify/fsnotify. inotify watches one directory, not
// a tree, so the watcher adds every directory a sync would enter, and each new one as it
// appears (with the files already in it: they may have been written before the watch was).
package treewatch

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/kmodvm/kmodvm/provision/treesync"
)

// DefaultQuiet is how long the tree must stay quiet before a burst of changes counts as
// done. An editor's save (vim: the probe file 4913, a backup, the write, a rename) takes a
// few milliseconds and `git checkout` writes its files back to back, but a format-on-save
// (rustfmt or clang-format run by the editor) rewrites the file 50-200 ms after the save.
// 300 ms takes all of these as one change, and is short next to what it starts (a host
// module build alone takes about 1.5 s), so nobody waits for it.
const DefaultQuiet = 300 * time.Millisecond

// ErrClosed is what Next returns once Close was called.
var ErrClosed = errors.New("treewatch: the watcher is closed")

// Clock is the time the watcher waits on; tests pass a manual one (treewatchtest.Clock) so
// they wait for events, never for time.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the watcher uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// RealClock is the wall clock.
type RealClock struct{}

// Now is time.Now.
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer is time.NewTimer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }

// Options tune a Watcher; the zero value is what `kmodvm watch` uses.
type Options struct {
	Quiet  time.Duration // how long a burst must be quiet to be done; 0: DefaultQuiet
	Ignore []string      // extra gitignore-like patterns, as treesync.Options.Ignore
	Clock  Clock         // nil: RealClock
	Log    *slog.Logger  // nil: discard
	// Seen, when set, is called with every file event once the watcher has taken it in (an
	// event that counts is then part of the pending batch, and its quiet period runs). It
	// runs on the watcher's goroutine and must not block.
	Seen func(Event)
}

// Event is one file event as the watcher judged it.
type Event struct {
	Path    string // relative to the root, slash-separated
	Op      string // fsnotify's: CREATE, WRITE, REMOVE, RENAME, CHMOD
	Ignored bool   // no part of a sync: the sync skips it, or an editor's temporary file
}

// Batch is what changed in a burst (or in several, when nobody took the first in time).
type Batch struct {
	Paths []string // relative to the root, slash-separated, sorted, each once
	// Overflow: the kernel's event queue overflowed, so Paths misses some changes; anything
	// may have changed.
	Overflow bool
}

// Watcher watches one tree. Next returns its batches; Close stops it.
type Watcher struct {
	root  string
	opt   Options
	fsw   *fsnotify.Watcher
	match *treesync.Matcher
	dirs  map[string]bool // the watched directories, absolute

	out       chan Batch
	stop      chan struct{}
	stopped   chan struct{}
	err       error // why the loop ended; read once out is closed
	closeOnce sync.Once
}

// New watches the tree at root and every directory in it that a sync would enter. A bad
// .kmodvmignore is a *treesync.TreeError, as for the sync.
func New(root string, opt Options) (*Watcher, error) {
	if opt.Quiet <= 0 {
		opt.Quiet = DefaultQuiet
	}
	if opt.Clock == nil {
		opt.Clock = RealClock{}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	// Events name resolved paths: a root reached through a symlink would match none.
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	if root, err = filepath.Abs(root); err != nil {
		return nil, fmt.Errorf("watch %s: %w", root, err)
	}
	m, err := treesync.LoadMatcher(root, opt.Ignore)
	if err != nil {
		return nil, err
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, watchError(root, err)
	}
	w := &Watcher{root: root, opt: opt, fsw: fsw, match: m, dirs: map[string]bool{},
		out: make(chan Batch), stop: make(chan struct{}), stopped: make(chan struct{})}
	if _, err := w.addTree(root); err != nil {
		fsw.Close()
		return nil, err
	}
	go w.loop()
	return w, nil
}

// Root is the watched directory, absolute and free of symlinks.
func (w *Watcher) Root() string { return w.root }

// Next waits for the next batch of changes: the changes since the last batch, once they
// have been quiet for Options.Quiet. Changes made while nobody waits in Next are kept and
// merged, so a caller busy with one batch gets exactly one more after it, with everything
// that changed meanwhile. The error is ctx's, ErrClosed, or why watching had to stop (the
// root was removed, the inotify limits were reached).
func (w *Watcher) Next(ctx context.Context) (Batch, error) {
	select {
	case <-ctx.Done():
		return Batch{}, ctx.Err()
	case b, ok := <-w.out:
		if !ok {
			return Batch{}, w.err
		}
		return b, nil
	}
}

// Close stops watching and waits until the watcher's goroutines have ended.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.stopped
	return w.fsw.Close()
}

// loop takes in the file events, keeps what changed in pending, and offers it as a batch
// once no change has come for opt.Quiet and until a new change starts another quiet period.
func (w *Watcher) loop() {
	pending := map[string]bool{}
	overflow := false
	var timer Timer
	var ready *Batch // pending as a batch, once quiet
	rearm := func() {
		if timer != nil {
			timer.Stop()
		}
		timer = w.opt.Clock.NewTimer(w.opt.Quiet)
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
		close(w.out)
		close(w.stopped)
	}()
	w.err = ErrClosed
	for {
		var fire <-chan time.Time
		if timer != nil {
			fire = timer.C()
		}
		var out chan<- Batch
		var b Batch
		if ready != nil && timer == nil {
			out, b = w.out, *ready
		}
		select {
		case <-w.stop:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			seen, changed, err := w.handle(ev)
			if err != nil {
				w.err = err
				return
			}
			for _, p := range changed {
				pending[p] = true
			}
			if len(changed) > 0 {
				rearm()
			}
			w.seen(seen)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				w.err = watchError(w.root, err)
				return
			}
			// Events were lost: anything may have changed, and new directories may be
			// unwatched. Watch them (adding a watched one again is harmless).
			w.opt.Log.Warn("watch: the kernel dropped file events (queue overflow); the next run syncs whatever changed", "root", w.root)
			if _, err := w.addTree(w.root); err != nil {
				w.err = err
				return
			}
			overflow = true
			rearm()
		case <-fire:
			timer = nil
			ready = &Batch{Paths: slices.Sorted(maps.Keys(pending)), Overflow: overflow}
		case out <- b:
			ready, pending, overflow = nil, map[string]bool{}, false
		}
	}
}

func (w *Watcher) seen(ev Event) {
	w.opt.Log.Debug("watch: event", "path", ev.Path, "op", ev.Op, "ignored", ev.Ignored)
	if w.opt.Seen != nil {
		w.opt.Seen(ev)
	}
}

// handle judges one event: changed is what it changed that a sync would carry (a new
// directory brings the files already in it), none when it is ignored.
func (w *Watcher) handle(ev fsnotify.Event) (seen Event, changed []string, err error) {
	p := filepath.Clean(ev.Name)
	if p == w.root {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			return Event{}, nil, fmt.Errorf("the module directory %s was removed or moved away; hint: run `kmodvm watch` again on the directory where it is now", w.root)
		}
		return Event{Op: ev.Op.String(), Ignored: true}, nil, nil // its own mode or times
	}
	relOS, err := filepath.Rel(w.root, p)
	if err != nil || relOS == ".." || strings.HasPrefix(relOS, ".."+string(filepath.Separator)) {
		return Event{Path: p, Op: ev.Op.String(), Ignored: true}, nil, nil
	}
	rel := filepath.ToSlash(relOS)
	info, statErr := os.Lstat(p)
	isDir := w.dirs[p]
	if statErr == nil {
		isDir = info.IsDir()
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		w.forget(p)
	}
	seen = Event{Path: rel, Op: ev.Op.String(), Ignored: skip(w.match, rel, isDir)}
	if seen.Ignored {
		return seen, nil, nil
	}
	changed = []string{rel}
	if rel == treesync.IgnoreFile {
		w.reloadIgnore()
	}
	if statErr == nil && isDir && ev.Has(fsnotify.Create) {
		found, err := w.addTree(p)
		if err != nil {
			return seen, nil, err
		}
		changed = append(changed, found...)
	}
	return seen, changed, nil
}

// forget stops watching a directory that was removed or moved (inotify would go on
// reporting a moved one under its old name); a directory moved within the tree is watched
// again by the Create of its new name.
func (w *Watcher) forget(p string) {
	if !w.dirs[p] {
		return
	}
	for d := range w.dirs {
		if d == p || strings.HasPrefix(d, p+string(filepath.Separator)) {
			delete(w.dirs, d)
			_ = w.fsw.Remove(d) // gone already when it was removed
		}
	}
}

// reloadIgnore reads .kmodvmignore again. A pattern the sync would refuse keeps the rules
// as they were: the next run says what is wrong with it. Directories no longer ignored are
// watched from now on.
func (w *Watcher) reloadIgnore() {
	m, err := treesync.LoadMatcher(w.root, w.opt.Ignore)
	if err != nil {
		w.opt.Log.Warn("watch: keeping the previous ignore rules", "err", err)
		return
	}
	w.match = m
	if _, err := w.addTree(w.root); err != nil {
		w.opt.Log.Warn("watch: watching the directories .kmodvmignore no longer ignores", "err", err)
	}
}

// addTree watches dir and every directory under it that a sync would enter, and returns the
// files and directories under dir that a sync would carry (relative to the root).
func (w *Watcher) addTree(dir string) ([]string, error) {
	var found []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != w.root && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we looked
			}
			return fmt.Errorf("watch %s: %w", p, err)
		}
		if p != w.root {
			relOS, err := filepath.Rel(w.root, p)
			if err != nil {
				return fmt.Errorf("watch %s: %w", p, err)
			}
			rel := filepath.ToSlash(relOS)
			if skip(w.match, rel, d.IsDir()) {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() || p != dir {
				found = append(found, rel)
			}
			if !d.IsDir() {
				return nil
			}
		}
		if w.dirs[p] {
			return nil
		}
		if err := w.fsw.Add(p); err != nil {
			if p != w.root && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return watchError(p, err)
		}
		w.dirs[p] = true
		return nil
	})
	return found, err
}

// watchError explains the errors inotify gives when a limit is reached. ENOSPC is not
// wrapped: it is no full disk, and must not be reported as one.
func watchError(dir string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("watch %s: the limit of inotify watches (fs.inotify.max_user_watches) is reached: %v; hint: raise it, e.g. `sudo sysctl fs.inotify.max_user_watches=524288`, or leave big directories out in .kmodvmignore", dir, err)
	case errors.Is(err, syscall.EMFILE):
		return fmt.Errorf("watch %s: the limit of inotify instances (fs.inotify.max_user_instances) is reached: %v; hint: stop other file watchers, or raise it, e.g. `sudo sysctl fs.inotify.max_user_instances=1024`", dir, err)
	}
	return fmt.Errorf("watch %s: %w", dir, err)
}
