package main

import (
	"fmt"
	"os"
	"slices"
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

// TestREADMEExitCodes: README's exit-code table lists exactly the codes the CLI defines, in
// the same order.
func TestREADMEExitCodes(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "### Exit codes\n")
	if !ok {
		t.Fatal("README.md has no '### Exit codes' section")
	}
	table, _, _ = strings.Cut(table, "\n\n#")
	var got []int
	for _, line := range strings.Split(table, "\n") {
		var code int
		if _, err := fmt.Sscanf(line, "| %d |", &code); err == nil {
			got = append(got, code)
		}
	}
	var want []int
	for _, e := range exitCodes {
		want = append(want, e.code)
	}
	if !slices.Equal(got, want) {
		t.Errorf("README.md's exit codes %v, the CLI's %v", got, want)
	}
}
