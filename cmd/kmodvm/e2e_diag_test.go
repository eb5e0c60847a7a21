package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/provision/module"
)

// TestE2EDiagnostics: on the real kernel, a module's build errors name files on the host.
// cfgout-rust uses kernel::configfs, which the default kernel configures out: built on the
// host and in the guest, it fails (exit 3) with one hint that names CONFIG_CONFIGFS_FS, says
// this kernel has it off and gives the kmodvm.yaml lines; the hint's item is a host copy of
// the kernel crate's lib.rs in the kernel's cache entry, at the line of the item or its
// #[cfg]; no path into the guest's kernel tree is left in the output. header-c's macro
// breaks slab.h: the error is at the host copy of that header, at the line declaring kfree.
// Then a VM on the kernel made with the hint's own kmodvm.yaml lines builds and loads
// cfgout-rust.
func TestE2EDiagnostics(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	name, _ := e2eVM(t, "e2e-diag")
	n := []string{"-n", name}
	root := repoRoot(t)
	cache := e2ePaths(t).Cache
	cfgout := filepath.Join(root, "testdata/modules/cfgout-rust")
	header := filepath.Join(root, "testdata/modules/header-c")
	guestPath := regexp.MustCompile(`(?:/usr/src/kmodvm/linux/|--> )\S+\.(?:rs|c|h):\d+`)
	noGuestPaths := func(what, out string) {
		t.Helper()
		for _, m := range guestPath.FindAllString(out, -1) {
			if strings.HasPrefix(m, "--> /") {
				continue // a host path
			}
			t.Errorf("%s: the output still names %q, a path on no host file", what, m)
		}
	}
	type runResult struct {
		Verdict string             `json:"verdict"`
		Build   module.BuildResult `json:"build"`
	}
	runJSON := func(dir string, extra ...string) runResult {
		t.Helper()
		code, out, _ := cli(t, ctx, append(append(append([]string{"run", "--json"}, n...), extra...), dir)...)
		var res runResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != 3 || res.Verdict != "build-failed" {
			t.Fatalf("run %s: exit %d, verdict %q (%v); want exit 3, build-failed", dir, code, res.Verdict, err)
		}
		return res
	}

	var config string
	for _, where := range []string{"host", "guest"} {
		res := runJSON(cfgout, "--build", where)
		if len(res.Build.Hints) != 1 {
			t.Fatalf("--build %s: %d hints, want 1:\n%s", where, len(res.Build.Hints), res.Build.Output)
		}
		h := res.Build.Hints[0]
		if h.Kind != "configured-out" || h.Cfg != "CONFIG_CONFIGFS_FS" || !slices.Equal(h.Fragments, []string{"CONFIG_CONFIGFS_FS=y"}) ||
			len(h.Needs) != 1 || h.Needs[0].Value != "n" || h.Needs[0].Blocker != "" {
			t.Errorf("--build %s: hint %+v; want CONFIG_CONFIGFS_FS, off here, nothing blocking it", where, h)
		}
		if h.Config != "kernel:\n  fragments: [\"CONFIG_CONFIGFS_FS=y\"]\n" {
			t.Errorf("--build %s: kmodvm.yaml lines %q", where, h.Config)
		}
		file, line := splitLocation(t, h.At)
		if !strings.HasPrefix(file, cache+"/kernels/builds/") {
			t.Errorf("--build %s: the item is at %s, not in a kernel's cache entry under %s", where, h.At, cache)
		}
		if text := lineText(t, file, line); !strings.Contains(strings.ToLower(text), "configfs") {
			t.Errorf("--build %s: %s is %q, not the configfs item or its #[cfg]", where, h.At, text)
		}
		if !strings.Contains(res.Build.Output, filepath.Join(cfgout, "cfgout.rs")+":5:5") {
			t.Errorf("--build %s: the output does not name the module's host file at its use of configfs:\n%s", where, res.Build.Output)
		}
		if !strings.HasSuffix(strings.TrimSpace(res.Build.Output), strings.TrimSpace(h.Text)) {
			t.Errorf("--build %s: the output does not end with the hint", where)
		}
		noGuestPaths("cfgout-rust, --build "+where, res.Build.Output)
		config = h.Config
	}
	code, out, _ := cli(t, ctx, append(append([]string{"run"}, n...), cfgout)...)
	if code != 3 || !strings.Contains(out, "hint: the item at ") || !strings.Contains(out, `      fragments: ["CONFIG_CONFIGFS_FS=y"]`) {
		t.Errorf("run (text): exit %d; want 3 and the hint with its kmodvm.yaml lines", code)
	}

	res := runJSON(header)
	errRE := regexp.MustCompile(`(?m)^(\S+\.h):(\d+):\d+: error: `)
	m := errRE.FindStringSubmatch(res.Build.Output)
	if m == nil {
		t.Fatalf("header-c: no error in a header:\n%s", res.Build.Output)
	}
	line, _ := strconv.Atoi(m[2])
	if !strings.HasPrefix(m[1], cache+"/kernels/builds/") || !strings.HasSuffix(m[1], "/kdir/include/linux/slab.h") {
		t.Errorf("header-c: the error is in %s, not the kernel's staged slab.h on the host", m[1])
	} else {
		checkLine(t, m[1], line, "kfree")
	}
	if !strings.Contains(res.Build.Output, "In file included from "+filepath.Join(header, "header_c.c")+":4:") {
		t.Errorf("header-c: the include chain does not start at the module's host file")
	}
	if len(res.Build.Hints) != 0 {
		t.Errorf("header-c: hints %+v, want none", res.Build.Hints)
	}
	noGuestPaths("header-c", res.Build.Output)

	// The hint is right: its lines make a kernel in which the module builds and loads.
	cfg := writeE2EFile(t, filepath.Join(t.TempDir(), "kmodvm.yaml"), config)
	fixed, _ := e2eVM(t, "e2e-diag-fixed")
	code, out, _ = cli(t, ctx, "run", "-n", fixed, "--config", cfg, cfgout)
	if code != 0 || !strings.Contains(out, "a configfs subsystem takes") {
		t.Errorf("run on the kernel the hint's lines make: exit %d; want 0 and the module's init line", code)
	}
}

// splitLocation splits "path:line:col".
func splitLocation(t *testing.T, at string) (string, int) {
	t.Helper()
	rest, _, ok := cutLast(at)
	file, ln, ok2 := cutLast(rest)
	line, err := strconv.Atoi(ln)
	if !ok || !ok2 || err != nil {
		t.Fatalf("%q is not path:line:col", at)
	}
	return file, line
}

func cutLast(s string) (string, string, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// lineText is line (from 1) of file.
func lineText(t *testing.T, file string, line int) string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		t.Fatalf("%s has no line %d", file, line)
	}
	return lines[line-1]
}
