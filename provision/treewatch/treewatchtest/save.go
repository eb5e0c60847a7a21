package treewatchtest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/treewatch"
)

// Events are the file events a watcher judged, in order: set Options.Seen to its Seen and
// a test can wait until the watcher has counted a change, never for time.
type Events chan treewatch.Event

// NewEvents returns Events with room for more than a test makes.
func NewEvents() Events { return make(Events, 4096) }

// Seen is an Options.Seen.
func (e Events) Seen(ev treewatch.Event) { e <- ev }

// WaitCounted waits until the watcher has counted a change of rel (the path relative to the
// watched root); it fails the test if the watcher counted any other change first.
func (e Events) WaitCounted(t testing.TB, rel string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-e:
			if ev.Ignored {
				continue
			}
			if ev.Path == rel {
				return
			}
			t.Fatalf("the watcher counted %s %s, waiting for %s", ev.Op, ev.Path, rel)
		case <-deadline:
			t.Fatalf("the watcher did not see %s within 10 s", rel)
		}
	}
}

// Save saves name under dir as editors save it: content in a temporary file (one a watcher
// ignores) renamed over the target, so the save is one event.
func Save(t testing.TB, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".new~")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}
