package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/images/userns"
)

// scriptSubidFuncs are has_subids and free_subids from scripts/deps.sh, reading subuid and
// subgid in dir instead of /etc.
func scriptSubidFuncs(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile("../../scripts/deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	var funcs []string
	for _, name := range []string{"has_subids", "free_subids"} {
		m := regexp.MustCompile(`(?ms)^` + name + `\(\) \{\n.*?^\}\n`).Find(data)
		if m == nil {
			t.Fatalf("no %s() in scripts/deps.sh", name)
		}
		funcs = append(funcs, string(m))
	}
	s := strings.Join(funcs, "")
	s = strings.ReplaceAll(s, "/etc/subuid", filepath.Join(dir, "subuid"))
	return strings.ReplaceAll(s, "/etc/subgid", filepath.Join(dir, "subgid"))
}

// TestDepsScriptSubids: deps.sh decides "has subordinate ids" and picks a free range as
// images/userns does, so the range it adds is the one `kmodvm doctor` would propose.
func TestDepsScriptSubids(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	tests := []struct{ name, subuid, subgid string }{
		{"empty", "", ""},
		{"alice has a block", "alice:100000:65536\n", "alice:100000:65536\n"},
		{"alice by uid", "1000:165536:65536\n", "bob:100000:65536\n"},
		{"too small", "alice:100000:100\n", "# comment\nalice:300000:70000\n"},
		{"gaps and garbage", "bob:100000:65536\ngarbage\ncarol:231072:65536\n", "dave:165536:10\nx:y:z\n"},
		{"overlap at the end", "bob:165535:1\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range map[string]string{"subuid": tt.subuid, "subgid": tt.subgid} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			script := scriptSubidFuncs(t, dir) + `
for f in subuid subgid; do has_subids "$1/$f" alice 1000 && echo yes || echo no; done
free_subids
`
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bash, "-c", script, "bash", dir)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("%v: %s", err, stderr.String())
			}
			var want []string
			for _, content := range []string{tt.subuid, tt.subgid} {
				_, count, ok := userns.ParseSubids(strings.NewReader(content), "alice", 1000)
				if ok && count >= userns.MinSubids {
					want = append(want, "yes")
				} else {
					want = append(want, "no")
				}
			}
			first, last := userns.FreeRange([]byte(tt.subuid), []byte(tt.subgid))
			want = append(want, fmt.Sprintf("%d-%d", first, last))
			if got := strings.Fields(stdout.String()); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("deps.sh says %q, images/userns says %q", got, want)
			}
		})
	}
}
