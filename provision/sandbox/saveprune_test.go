package sandbox

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/images/ondisk"
)

// TestPrunePristine: after VM "dev" got the pristine save "new", its other saves go, and of
// the rest only the most recently used stay, up to maxPristineSaves in all; a save being
// made (its entry locked) is never removed.
func TestPrunePristine(t *testing.T) {
	type save struct {
		name, vm string
		age      time.Duration // since its last use
	}
	tests := []struct {
		name   string
		saves  []save
		locked string
		want   []string // the saves left, sorted
	}{
		{"one", []save{{"new", "dev", 0}}, "", []string{"new"}},
		{"other VMs under the limit", []save{{"new", "dev", 0}, {"a", "ci-1", time.Hour}, {"b", "ci-2", 2 * time.Hour}},
			"", []string{"a", "b", "new"}},
		{"the VM's older save", []save{{"new", "dev", 0}, {"old", "dev", time.Minute}, {"a", "ci-1", time.Hour}},
			"", []string{"a", "new"}},
		{"least recently used beyond the limit", []save{{"new", "dev", 0}, {"a", "ci-1", 4 * time.Hour},
			{"b", "ci-2", time.Hour}, {"c", "ci-3", 3 * time.Hour}, {"d", "ci-4", 2 * time.Hour}, {"e", "ci-5", 5 * time.Hour}},
			"", []string{"b", "c", "d", "new"}},
		{"the new save counts even when its key file is older", []save{{"new", "dev", 9 * time.Hour},
			{"a", "ci-1", time.Hour}, {"b", "ci-2", 2 * time.Hour}, {"c", "ci-3", 3 * time.Hour}, {"d", "ci-4", 4 * time.Hour}},
			"", []string{"a", "b", "c", "new"}},
		{"a locked save stays", []save{{"new", "dev", 0}, {"old", "dev", time.Minute}}, "old", []string{"new", "old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			now := time.Now()
			for _, s := range tt.saves {
				dir := filepath.Join(parent, s.name)
				writeFile(t, filepath.Join(dir, memoryFile), "memory")
				writeFile(t, filepath.Join(dir, overlayFile), "overlay")
				data, _ := json.Marshal(saveMeta{Key: testKey(), VM: s.vm})
				meta := filepath.Join(dir, metaFile)
				writeFile(t, meta, string(data))
				if err := os.Chtimes(meta, now.Add(-s.age), now.Add(-s.age)); err != nil {
					t.Fatal(err)
				}
			}
			writeFile(t, filepath.Join(parent, ".tmp-half-made"), "") // not a save: ignored
			if tt.locked != "" {
				unlock, ok, err := ondisk.TryLock(filepath.Join(parent, tt.locked+".lock"))
				if err != nil || !ok {
					t.Fatalf("lock: %v %v", ok, err)
				}
				defer unlock()
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			removed := prunePristine(log, parent, filepath.Join(parent, "new"), "dev")
			var left []string
			for _, e := range listPristine(parent) {
				left = append(left, filepath.Base(e.dir))
			}
			slices.Sort(left)
			if !slices.Equal(left, tt.want) {
				t.Errorf("left %q, want %q", left, tt.want)
			}
			if len(removed)+len(left) != len(tt.saves) {
				t.Errorf("removed %q and left %q of %d saves", removed, left, len(tt.saves))
			}
			if tmps, _ := filepath.Glob(filepath.Join(parent, ".tmp-*-pruned")); len(tmps) != 0 {
				t.Errorf("a removed save is left behind: %q", tmps)
			}
		})
	}
}
