package config

import (
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/module"
)

// The config's default module timeout is the runner's, and the example file says it.
func TestDefaultTimeoutIsTheRunners(t *testing.T) {
	if got := Default().Module.Timeout; got != module.DefaultTimeout {
		t.Errorf("Default().Module.Timeout = %s, want module.DefaultTimeout %s", got, module.DefaultTimeout)
	}
	want := "timeout: " + strings.TrimSuffix(module.DefaultTimeout.String(), "0s") + " "
	if !strings.Contains(ExampleYAML, want) {
		t.Errorf("ExampleYAML does not say %q", want)
	}
}
