package main

import (
	"slices"
	"testing"

	"github.com/kmodvm/kmodvm/vm/vmtest"
)

// TestLibvirtURIIsTheConfiguredOne: the CLI reaches libvirt at vm.uri from kmodvm.yaml, or at
// --uri, which overrides it, and nowhere else. Each URI names the socket of a fake libvirtd
// that records the URI a client opens on it.
func TestLibvirtURIIsTheConfiguredOne(t *testing.T) {
	tests := []struct {
		name             string
		inYAML, withFlag bool
	}{
		{name: "vm.uri", inYAML: true},
		{name: "--uri", withFlag: true},
		{name: "--uri over vm.uri", inYAML: true, withFlag: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolate(t)
			yamlDaemon, flagDaemon := vmtest.NewDaemon(t), vmtest.NewDaemon(t)
			dir := t.TempDir()
			args := []string{"status", "-n", "dev"}
			if tt.inYAML {
				writeFiles(t, dir, map[string]string{"kmodvm.yaml": "vm:\n  uri: qemu:///system?socket=" + yamlDaemon.Socket + "\n"})
			}
			if tt.withFlag {
				args = append(args, "--uri", "qemu:///session?socket="+flagDaemon.Socket)
			}
			// The fake hangs up once the connection is open, so the command fails after that.
			if res := runIn(t, dir, args...); res.code != exitFailure {
				t.Errorf("exit %d, want %d once the fake daemon hangs up", res.code, exitFailure)
			}
			var wantYAML, wantFlag []string
			switch {
			case tt.withFlag:
				wantFlag = []string{"qemu:///session"}
			case tt.inYAML:
				wantYAML = []string{"qemu:///system"}
			}
			if got := yamlDaemon.Opened(); !slices.Equal(got, wantYAML) {
				t.Errorf("vm.uri's daemon saw %q opened, want %q", got, wantYAML)
			}
			if got := flagDaemon.Opened(); !slices.Equal(got, wantFlag) {
				t.Errorf("--uri's daemon saw %q opened, want %q", got, wantFlag)
			}
		})
	}
}
