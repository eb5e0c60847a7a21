package userns

import (
	"slices"
	"testing"
)

func TestArgv(t *testing.T) {
	tests := []struct {
		name string
		euid int
		argv []string
		want []string
	}{
		{"root runs as is", 0, []string{"tar", "-x"}, []string{"tar", "-x"}},
		{"user runs in a namespace", 1000, []string{"tar", "-x"}, []string{"unshare", "--map-root-user", "--map-auto", "--", "tar", "-x"}},
		{"arguments that look like options stay after --", 1000, []string{"mkfs.ext4", "--help"}, []string{"unshare", "--map-root-user", "--map-auto", "--", "mkfs.ext4", "--help"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv := slices.Clone(tt.argv)
			if got := Argv(tt.euid, argv); !slices.Equal(got, tt.want) {
				t.Errorf("Argv(%d, %q) = %q, want %q", tt.euid, tt.argv, got, tt.want)
			}
			if !slices.Equal(argv, tt.argv) {
				t.Errorf("Argv changed its argument: %q", argv)
			}
		})
	}
}
