package ktrace

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kmodvm/kmodvm/provision/kmsg"
)

// FuzzParse feeds Parse arbitrary logs, seeded with the captured ones: it
// must not panic, and what it returns must point back into the log.
func FuzzParse(f *testing.F) {
	logs, _ := filepath.Glob("testdata/traces/*.log")
	for _, p := range logs {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add("    # t: try faulted: last line seen t.c:1\nCall Trace:\n ? 0x1\n x+0x1/0x2 [m]\npanicked at a.rs:1:2:\n")
	f.Fuzz(func(t *testing.T, log string) {
		recs := kmsg.ParseLog(log)
		for _, tr := range Parse(recs) {
			if tr.Record < 0 || tr.Record >= len(recs) {
				t.Fatalf("trace %q starts at record %d of %d", tr.Title, tr.Record, len(recs))
			}
			if tr.Frames == nil {
				t.Fatalf("trace %q: nil frames (JSON would say null)", tr.Title)
			}
			for _, fr := range tr.Frames {
				again, ok := ParseFrame(fr.Raw)
				if !ok || again != fr {
					t.Fatalf("frame %+v does not parse back from its raw text: %+v %v", fr, again, ok)
				}
			}
			_ = Format(tr)
		}
	})
}
