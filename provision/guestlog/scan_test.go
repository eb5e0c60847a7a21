package guestlog

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/kmsg"
)

type lostRange struct{ from, n uint64 }

// TestScan: records come out in order, and every gap in the sequence numbers is
// reported once, with its size and first missing number. The first record's number is
// where the log starts, not a loss.
func TestScan(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		wantSeqs []uint64
		wantLost []lostRange
	}{
		{"no gap", "6,10,1,-;a\n6,11,2,-;b\n6,12,3,-;c\n", []uint64{10, 11, 12}, nil},
		{"starts late", "6,5000,1,-;oldest left\n6,5001,2,-;next\n", []uint64{5000, 5001}, nil},
		{"one gap", "6,10,1,-;a\n6,15,2,-;f\n", []uint64{10, 15}, []lostRange{{11, 4}}},
		{"two gaps", "6,0,1,-;a\n6,2,2,-;c\n6,3,3,-;d\n6,100,4,-;x\n", []uint64{0, 2, 3, 100}, []lostRange{{1, 1}, {4, 96}}},
		{"dictionary lines and noise are no records", "6,7,1,-;a\n SUBSYSTEM=virtio\n DEVICE=+virtio:1\ngarbage\n6,8,2,-;b\n", []uint64{7, 8}, nil},
		{"last line without newline", "6,7,1,-;a\n6,9,2,-;c", []uint64{7, 9}, []lostRange{{8, 1}}},
		{"empty", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seqs []uint64
			var lost []lostRange
			var s Scanner
			err := s.Scan(strings.NewReader(tt.in), func(r kmsg.Record) {
				seqs = append(seqs, r.Seq)
			}, func(from, n uint64) { lost = append(lost, lostRange{from, n}) })
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(seqs) != fmt.Sprint(tt.wantSeqs) {
				t.Errorf("seqs %v, want %v", seqs, tt.wantSeqs)
			}
			if fmt.Sprint(lost) != fmt.Sprint(tt.wantLost) {
				t.Errorf("lost %v, want %v", lost, tt.wantLost)
			}
		})
	}
}

// A Scanner that knows where to start counts the records lost before the first one it reads.
func TestScannerStarted(t *testing.T) {
	s := Scanner{Next: 10, Started: true}
	if from, n := s.Record(kmsg.Record{Seq: 13}); from != 10 || n != 3 {
		t.Errorf("lost %d from %d, want 3 from 10", n, from)
	}
	if _, n := s.Record(kmsg.Record{Seq: 14}); n != 0 {
		t.Errorf("lost %d, want none", n)
	}
}

// FuzzScan: whatever the guest sends, Scan emits records in the order read, and the records
// emitted plus those reported lost cover every number from the first to the last.
func FuzzScan(f *testing.F) {
	f.Add("6,10,1,-;a\n6,15,2,-;f\n")
	f.Add("6,7,1,-;a\n SUBSYSTEM=virtio\ngarbage\n6,8,2,-;b")
	f.Fuzz(func(t *testing.T, in string) {
		var first, last uint64
		var emitted, lost uint64
		huge := false // numbers near 2^64 wrap the sums; the kernel's never get there
		var s Scanner
		_ = s.Scan(strings.NewReader(in), func(r kmsg.Record) {
			if emitted == 0 {
				first = r.Seq
			}
			emitted++
			last = r.Seq
			huge = huge || r.Seq >= 1<<62
		}, func(from, n uint64) { lost += n })
		if !huge && emitted > 0 && last >= first && emitted+lost < last-first+1 {
			t.Errorf("%d emitted + %d lost do not cover %d..%d", emitted, lost, first, last)
		}
	})
}
