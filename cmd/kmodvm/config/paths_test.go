package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestResolvePaths(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		home    string
		want    Paths
		wantErr bool
	}{
		{"defaults", nil, "/home/me",
			Paths{State: "/home/me/.local/state/kmodvm", Cache: "/home/me/.cache/kmodvm"}, false},
		{"XDG", map[string]string{"XDG_STATE_HOME": "/xdg/state", "XDG_CACHE_HOME": "/xdg/cache/"}, "/home/me",
			Paths{State: "/xdg/state/kmodvm", Cache: "/xdg/cache/kmodvm"}, false},
		{"XDG without home", map[string]string{"XDG_STATE_HOME": "/s", "XDG_CACHE_HOME": "/c"}, "",
			Paths{State: "/s/kmodvm", Cache: "/c/kmodvm"}, false},
		{"relative XDG is ignored", map[string]string{"XDG_STATE_HOME": "state", "XDG_CACHE_HOME": "/c"}, "/home/me",
			Paths{State: "/home/me/.local/state/kmodvm", Cache: "/c/kmodvm"}, false},
		{"KMODVM_HOME wins", map[string]string{"KMODVM_HOME": "/opt/kmodvm/", "XDG_STATE_HOME": "/s"}, "",
			Paths{State: "/opt/kmodvm/state", Cache: "/opt/kmodvm/cache"}, false},
		{"relative KMODVM_HOME", map[string]string{"KMODVM_HOME": "kmodvm"}, "/home/me", Paths{}, true},
		{"no home", nil, "", Paths{}, true},
		{"relative home", nil, "home/me", Paths{}, true},
		{"cache needs home", map[string]string{"XDG_STATE_HOME": "/s"}, "", Paths{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			got, err := ResolvePaths(getenv, tt.home)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ResolvePaths error = %v, want error: %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ResolvePaths = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestEnsurePrivate(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		uid     int
		wantErr string
	}{
		{"created private", filepath.Join(base, "new", "state"), os.Getuid(), ""},
		{"0755 of ours made 0700", open, os.Getuid(), ""},
		{"someone else's", open, os.Getuid() + 1, "hint: set KMODVM_HOME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ensurePrivate(tt.dir, tt.uid)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "not to you") {
					t.Fatalf("ensurePrivate = %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fi, err := os.Stat(tt.dir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o700 {
				t.Errorf("%s is %v, want 0700", tt.dir, fi.Mode().Perm())
			}
		})
	}
}
