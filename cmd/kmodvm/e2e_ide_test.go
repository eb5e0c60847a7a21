package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/images"
	"github.com/kmodvm/kmodvm/provision/rustproject"
)

// TestE2EIDE: on the real kernel, `kmodvm ide` writes for a copy of examples/rust-hello a
// rust-project.json whose paths all exist on this host, and with which Debian sid's
// rust-analyzer (the toolchain root's rustc version), run on this host as an editor runs
// it, finds in the module no unresolved import, no unresolved macro and no macro that failed
// to expand. The same module with one bad import and one bad macro call gets exactly those
// two (the check is not vacuous). A second run leaves the file as it is, and a
// rust-project.json of the user's is never replaced.
func TestE2EIDE(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	// No VM of this name exists: ide writes for the kernel kmodvm.yaml selects. (-n would
	// name a VM that must exist.)
	cfg := writeE2EFile(t, filepath.Join(t.TempDir(), "kmodvm.yaml"), fmt.Sprintf("name: e2e-ide-%d\n", os.Getpid()))
	n := []string{"--config", cfg}
	mustCLI(t, ctx, append([]string{"kernel", "build"}, n...)...)
	root, err := images.OpenRoot(filepath.Join(e2ePaths(t).Cache, "images"), images.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	ra := fetchRustAnalyzer(t, ctx, root)

	good := exampleCopy(t, "rust-hello")
	res := ideRun(t, ctx, append(n, good)...)
	if !res.Changed || res.ModuleDir != good || strings.Join(res.ModuleCrates, ",") != "rust_hello" || res.VM != "" {
		t.Fatalf("ide: %+v; want rust_hello's file written for kmodvm.yaml's kernel", res)
	}
	checkProjectPaths(t, res.Path)
	if again := ideRun(t, ctx, append(n, good)...); again.Changed {
		t.Errorf("a second ide on an unchanged module and kernel rewrote the file")
	}
	for _, d := range moduleDiagnostics(t, ctx, root, ra, good) {
		if d.unresolved() || strings.Contains(d.Code, "macro-error") {
			t.Errorf("rust-analyzer: %s", d.Line)
		}
	}

	// The control: a bad import and a bad macro call are found.
	bad := exampleCopy(t, "rust-hello")
	src := filepath.Join(bad, "rust_hello.rs")
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeE2EFile(t, src, string(data)+"\nuse kernel::kmodvm_no_such_item;\nkmodvm_no_such_macro!();\n")
	ideRun(t, ctx, append(n, bad)...)
	var found []string
	for _, d := range moduleDiagnostics(t, ctx, root, ra, bad) {
		if d.unresolved() {
			found = append(found, d.Message)
		}
	}
	slices.Sort(found) // rust-analyzer's order is not the file's
	if strings.Join(found, "\n") != "unresolved import\nunresolved macro `kmodvm_no_such_macro!`" {
		t.Errorf("rust-analyzer on the module with a bad import and macro call found %q; want exactly those two", found)
	}

	// The user's own file stays.
	mine := exampleCopy(t, "rust-hello")
	own := writeE2EFile(t, filepath.Join(mine, rustproject.FileName), "{\"crates\": []}\n")
	code, _, stderr := cli(t, ctx, append(append([]string{"ide"}, n...), mine)...)
	if code == 0 || !strings.Contains(stderr, "does not replace it") || !strings.Contains(stderr, "hint: ") {
		t.Errorf("ide over the user's rust-project.json: exit %d, %s", code, stderr)
	}
	if data, _ := os.ReadFile(own); string(data) != "{\"crates\": []}\n" {
		t.Errorf("the user's rust-project.json became %q", data)
	}
}

// exampleCopy copies examples/NAME into a temporary directory: ide writes in it.
func exampleCopy(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	copyExample(t, name, dir)
	return dir
}

func ideRun(t *testing.T, ctx context.Context, args ...string) ideJSON {
	t.Helper()
	out := mustCLI(t, ctx, append([]string{"ide", "--json"}, args...)...)
	var res ideJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("ide --json: %v\n%s", err, out)
	}
	return res
}

// checkProjectPaths fails for every path of the rust-project.json at path that does not
// exist on this host.
func checkProjectPaths(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Sysroot    string `json:"sysroot"`
		SysrootSrc string `json:"sysroot_src"`
		Crates     []struct {
			RootModule string            `json:"root_module"`
			ProcMacro  string            `json:"proc_macro_dylib_path"`
			Env        map[string]string `json:"env"`
			Source     struct {
				IncludeDirs []string `json:"include_dirs"`
			} `json:"source"`
		} `json:"crates"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	paths := []string{p.Sysroot, p.SysrootSrc, filepath.Join(p.Sysroot, "libexec/rust-analyzer-proc-macro-srv"),
		filepath.Join(p.SysrootSrc, "core/src/lib.rs")}
	for _, c := range p.Crates {
		paths = append(append(paths, c.RootModule, c.ProcMacro, c.Env["OBJTREE"]), c.Source.IncludeDirs...)
	}
	for _, q := range paths {
		if q == "" {
			continue
		}
		if !filepath.IsAbs(q) {
			t.Errorf("%s names a relative path %s", path, q)
		} else if _, err := os.Stat(q); err != nil {
			t.Errorf("%s names %s: %v", path, q, err)
		}
	}
}

// fetchRustAnalyzer downloads Debian's rust-analyzer of the toolchain root's rustc version
// (it links that rustc's librustc_driver) with the root's apt and mirror, and unpacks it:
// the root stays unchanged (apt's lists and cache go to tmpfs). It returns the binary.
func fetchRustAnalyzer(t *testing.T, ctx context.Context, root *images.Root) string {
	t.Helper()
	dir := t.TempDir()
	const script = `set -e
v=$(dpkg-query -W -f '${Version}' rustc)
apt-get -q -o APT::Sandbox::User=root update >/dev/null
apt-get -q -o APT::Sandbox::User=root download "rust-analyzer=$v"
dpkg-deb -x rust-analyzer_*.deb unpacked`
	var out bytes.Buffer
	cmd := root.Command(ctx, images.RunOptions{
		Binds: []images.Bind{{Host: dir, Guest: "/root/out"}}, Dir: "/root/out", Stdout: &out, Stderr: &out,
		ReadOnlyRoot: true, Tmpfs: []string{"/root", "/var/lib/apt/lists", "/var/cache/apt"},
	}, "sh", "-c", script)
	if err := cmd.Run(); err != nil {
		t.Fatalf("download rust-analyzer in the toolchain root: %v\n%s", err, out.String())
	}
	return filepath.Join(dir, "unpacked/usr/bin/rust-analyzer")
}

// raDiagnostic is one diagnostic `rust-analyzer diagnostics` printed.
type raDiagnostic struct {
	File, Severity, Code, Message, Line string
}

// unresolved says whether d is an unresolved import (E0432) or macro call.
func (d raDiagnostic) unresolved() bool {
	return strings.Contains(d.Code, `"E0432"`) || strings.Contains(d.Code, "unresolved-import") || strings.Contains(d.Code, "unresolved-macro-call")
}

// raLine is a diagnostic line of `rust-analyzer diagnostics` (1.97): "at crate C, file F:
// Error RustcHardError("E0432") from LineCol { line: 103, col: 4 } to LineCol { ... }: unresolved import".
var raLine = regexp.MustCompile(`at crate \S+, file (.+?): (Error|Warning|WeakWarning|Allow) (.+?) from LineCol \{[^}]*\} to LineCol \{[^}]*\}: (.*)$`)

// moduleDiagnostics runs `rust-analyzer diagnostics DIR` on this host, through the root's
// loader and libraries (sid's glibc is newer than the host's), as an editor's would run,
// and returns the diagnostics in DIR's files. The kernel's own crates have some: its exit
// code says nothing about the module's.
func moduleDiagnostics(t *testing.T, ctx context.Context, root *images.Root, ra, dir string) []raDiagnostic {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	argv := rustproject.HostArgv(root.Dir, ra, "diagnostics", dir)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("rust-analyzer diagnostics %s: %v (%.0f s)", dir, err, time.Since(start).Seconds())
	// Its progress ("processing FILE") says it went through the module's files.
	if !strings.Contains(stdout.String(), "processing "+dir+string(filepath.Separator)) {
		errTail := stderr.String()
		if len(errTail) > 4000 {
			errTail = errTail[len(errTail)-4000:]
		}
		t.Fatalf("rust-analyzer diagnostics did not analyze %s (%v); stderr ends:\n%s", dir, err, errTail)
	}
	var diags []raDiagnostic
	seen := map[string]bool{}
	for _, line := range strings.Split(stdout.String(), "\n") {
		m := raLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if rel, err := filepath.Rel(dir, m[1]); err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		text := line[strings.Index(line, "at crate "):]
		if seen[text] { // printed once per pass over the file
			continue
		}
		seen[text] = true
		t.Logf("module: %s", text)
		diags = append(diags, raDiagnostic{File: m[1], Severity: m[2], Code: m[3], Message: m[4], Line: text})
	}
	return diags
}
