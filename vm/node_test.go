package vm

import (
	"errors"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/vmtest"
)

func TestNodeOf(t *testing.T) {
	lost := errors.New("connection lost")
	for _, tc := range []struct {
		name    string
		cpus    int
		memMiB  int
		fail    error
		want    Node
		wantErr string
	}{
		{name: "small host", cpus: 2, memMiB: 24 * 1024, want: Node{CPUs: 2, MemoryMiB: 24 * 1024}},
		{name: "big host", cpus: 64, memMiB: 512 * 1024, want: Node{CPUs: 64, MemoryMiB: 512 * 1024}},
		{name: "libvirt fails", fail: lost, wantErr: "ask the libvirt host for its CPUs and memory: connection lost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := vmtest.NewLibvirt()
			f.SetNode(tc.cpus, tc.memMiB)
			f.FailOn("NodeGetInfo", tc.fail)
			got, err := NodeOf(f)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, lost) {
					t.Fatalf("NodeOf = %v, %v; want error %q wrapping the cause", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NodeOf = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}
