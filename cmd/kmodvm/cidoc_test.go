package main

import (
	"os"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// workflow is the part of a GitHub Actions workflow docs/ci.md's checks read.
type workflow struct {
	Jobs map[string]struct {
		Env   map[string]string `yaml:"env"`
		Steps []struct {
			Name string            `yaml:"name"`
			ID   string            `yaml:"id"`
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			Dir  string            `yaml:"working-directory"`
			With map[string]string `yaml:"with"`
			Env  map[string]string `yaml:"env"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

// scriptUsage reads the forms of a call scripts/ci-module.sh documents in its header
// ("#   bash scripts/ci-module.sh ARGS   what"), as word lists.
func scriptUsage(t *testing.T, script string) [][]string {
	re := regexp.MustCompile(`(?m)^#\s+bash scripts/ci-module\.sh((?: \S+)*)\s{2,}`)
	var forms [][]string
	for _, m := range re.FindAllStringSubmatch(script, -1) {
		forms = append(forms, strings.Fields(m[1]))
	}
	if len(forms) == 0 {
		t.Fatal("scripts/ci-module.sh documents no usage in its header")
	}
	return forms
}

// matchesUsage: args fit form, where "[A [B]]" are optional positional words and anything
// else is a literal option.
func matchesUsage(form, args []string) bool {
	var literal []string
	optional := 0
	for _, w := range form {
		if strings.HasPrefix(w, "[") {
			optional++
			continue
		}
		if strings.HasSuffix(w, "]") {
			continue
		}
		literal = append(literal, w)
	}
	if len(args) < len(literal) || !slices.Equal(args[:len(literal)], literal) {
		return false
	}
	rest := args[len(literal):]
	for _, a := range rest {
		if strings.HasPrefix(a, "-") {
			return false
		}
	}
	return len(rest) <= optional
}

// TestCIRecipe: the workflow in docs/ci.md parses, calls scripts/ci-module.sh only in ways the
// script takes, caches under the key the script prints and the same paths when it restores
// and saves, and publishes the files the script writes.
func TestCIRecipe(t *testing.T) {
	doc, err := os.ReadFile("../../docs/ci.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/ci.md has no ```yaml block")
	}
	var wf workflow
	dec := yaml.NewDecoder(strings.NewReader(string(m[1])))
	if err := dec.Decode(&wf); err != nil {
		t.Fatalf("docs/ci.md's workflow does not parse: %v", err)
	}
	scriptData, err := os.ReadFile("../../scripts/ci-module.sh")
	if err != nil {
		t.Fatal(err)
	}
	script := string(scriptData)
	forms := scriptUsage(t, script)
	for _, f := range forms {
		for _, w := range f {
			if strings.HasPrefix(w, "--") && !strings.Contains(script, `= `+w+` ]`) {
				t.Errorf("the script documents %s but does not parse it", w)
			}
		}
	}
	if !strings.Contains(script, "(($# > 2))") {
		t.Error("the script no longer refuses more than MODULE_DIR and OUT_DIR: update matchesUsage's forms")
	}

	callRE := regexp.MustCompile(`bash (\S*scripts/ci-module\.sh)((?: [^ )"$;|&]+)*)`)
	var calls, outDirs []string
	keys := map[string]string{}
	paths := map[string]string{}
	var reports []string
	for _, job := range wf.Jobs {
		for k := range job.Env {
			if strings.HasPrefix(k, "KMODVM_") && !strings.Contains(script, k) {
				t.Errorf("the workflow sets %s, which the script does not read", k)
			}
		}
		for _, st := range job.Steps {
			for _, c := range callRE.FindAllStringSubmatch(st.Run, -1) {
				args := strings.Fields(c[2])
				calls = append(calls, c[0])
				if !slices.ContainsFunc(forms, func(f []string) bool { return matchesUsage(f, args) }) {
					t.Errorf("the workflow calls %q; the script takes %v", c[0], forms)
				}
				if len(args) == 2 {
					outDirs = append(outDirs, path.Join(st.Dir, args[1]))
				}
			}
			switch {
			case strings.HasPrefix(st.Uses, "actions/cache/restore@"), strings.HasPrefix(st.Uses, "actions/cache/save@"):
				keys[st.Uses] = st.With["key"]
				paths[st.Uses] = st.With["path"]
			case strings.HasPrefix(st.Uses, "actions/upload-artifact@"):
				reports = append(reports, strings.Fields(st.With["path"])...)
			case strings.HasPrefix(st.Uses, "mikepenz/action-junit-report@"):
				reports = append(reports, st.With["report_paths"])
			}
		}
	}
	if len(calls) != 2 {
		t.Fatalf("the workflow calls the script %d times, want 2 (--cache-key, then the job): %q", len(calls), calls)
	}
	if len(keys) != 2 || keys["actions/cache/restore@v4"] != keys["actions/cache/save@v4"] || !strings.Contains(keys["actions/cache/save@v4"], "steps.key.outputs.key") {
		t.Errorf("restore and save must both use the script's key: %v", keys)
	}
	if paths["actions/cache/restore@v4"] != paths["actions/cache/save@v4"] || !strings.Contains(paths["actions/cache/save@v4"], "KMODVM_HOME }}/cache") {
		t.Errorf("restore and save must cache the same paths, KMODVM_HOME/cache: %v", paths)
	}
	if len(outDirs) != 1 {
		t.Fatalf("want one call with MODULE_DIR and OUT_DIR, got %v", outDirs)
	}
	for _, want := range []string{"run.json", "junit.xml"} {
		if !strings.Contains(script, `"$out/`+want+`"`) {
			t.Errorf("the script does not write OUT_DIR/%s", want)
		}
		if !slices.Contains(reports, path.Join(outDirs[0], want)) {
			t.Errorf("the workflow does not publish %s (the script writes it to %s): %v", want, outDirs[0], reports)
		}
	}
}

// TestCIScriptShellcheck: the script a module author's CI runs is shellcheck-clean (as make
// lint checks every script; this says so where the recipe is tested).
func TestCIScriptShellcheck(t *testing.T) {
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("no shellcheck (make lint runs it)")
	}
	if out, err := exec.Command(sc, "../../scripts/ci-module.sh").CombinedOutput(); err != nil {
		t.Errorf("shellcheck scripts/ci-module.sh: %v\n%s", err, out)
	}
}
