package main

import (
	"os"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/cmd/kmodvm/config"
)

// README.md documents every key of kmodvm.yaml by embedding config.ExampleYAML; keep the
// two the same.
func TestREADMEConfigIsExampleYAML(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+config.ExampleYAML+"```") {
		t.Error("README.md's configuration block differs from config.ExampleYAML: paste ExampleYAML into README.md#configuration")
	}
}
