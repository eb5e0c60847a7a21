package config

import (
	"reflect"
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
