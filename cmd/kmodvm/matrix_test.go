package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/matrix"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/sandbox"
	"github.com/kmodvm/kmodvm/vm"
	"github.com/kmodvm/kmodvm/vm/golden"
	"github.com/kmodvm/kmodvm/vm/vmtest"
)

// matrixWorld plays the matrix's seams: libvirt is a fake host, kernels "build" by name
// (badKernels fail), and each cell's VM is a fake whose run fails to load the modules in
// loadFails on the kernels whose VM names carry the tag.
type matrixWorld struct {
	lv         *vmtest.Libvirt
	badKernels map[string]bool
	loadFails  map[string]string // module dir base -> VM tag it fails on ("" none)
	// block, when set, is where a cell's run waits until its context ends (after it says
	// so on started): an interrupted matrix.
	block func(ctx context.Context)
	ctx   context.Context // the command's context, when set

	mu       sync.Mutex
	prepared []string
	opened   []string
	ups      []bool
}

// matrixRunner plays one cell's run: the verdict of its module on its VM's kernel.
type matrixCellRunner struct {
	w    *matrixWorld
	name string
}

func (r *matrixCellRunner) Run(ctx context.Context, opt module.Options) (*module.Result, error) {
	if r.w.block != nil {
		r.w.block(ctx)
		return nil, ctx.Err()
	}
	base := filepath.Base(opt.Source.Dir)
	res := &module.Result{Module: opt.Source.Dir, Modules: opt.Source.Modules,
		Build: module.BuildResult{Where: module.BuildHost, OK: true, Duration: 2 * time.Second}, Duration: 3 * time.Second}
	if tag, ok := r.w.loadFails[base]; ok && strings.HasPrefix(r.name, "mx-"+tag+"-") {
		res.Steps = []module.Step{{Action: "load", Module: base, Iteration: 1, Error: "insmod: ERROR: could not insert module: Invalid parameters",
			Log: []string{base + ": init returned -22"}}}
		res.Verdict, res.Title = module.VerdictLoadFailed, "insmod failed: Invalid parameters"
		return res, nil
	}
	res.Steps = []module.Step{{Action: "load", Module: base, Iteration: 1, OK: true, Log: []string{base + ": hello"}},
		{Action: "unload", Module: base, Iteration: 1, OK: true, Log: []string{base + ": bye"},
			Findings: []kmsg.Finding(nil)}}
	res.Verdict, res.Title = module.VerdictOK, "loaded and unloaded cleanly"
	return res, nil
}

func (r *matrixCellRunner) Close() error { return nil }

// run runs `kmodvm args...` in dir with the world's seams.
func (w *matrixWorld) run(t *testing.T, dir string, args ...string) cliResult {
	t.Helper()
	t.Chdir(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if w.ctx != nil {
		ctx = w.ctx
	}
	var out, errb bytes.Buffer
	code := runApp(ctx, args, strings.NewReader(""), &out, &errb, func(a *app) {
		a.libvirt = func(context.Context) (vm.Libvirt, error) { return w.lv, nil }
		a.prepareKernel = func(_ context.Context, label string) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.prepared = append(w.prepared, label)
			if w.badKernels[label] {
				return errors.New("make: *** [Makefile:1234: vmlinux] Error 2")
			}
			return nil
		}
		a.openVM = func(_ context.Context, name string, up bool) (moduleVM, error) {
			w.mu.Lock()
			w.opened = append(w.opened, name)
			w.ups = append(w.ups, up)
			w.mu.Unlock()
			in := &sandbox.Instance{Name: name, Accel: vm.AccelTCG, KernelRelease: "7.2.13-kmodvm", ConfigHash: "c0ffee"}
			return moduleVM{in: in, runner: &matrixCellRunner{w: w, name: name}, release: func() {}}, nil
		}
	})
	t.Logf("kmodvm %s -> exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errb.String())
	return cliResult{code, out.String(), errb.String()}
}

func newMatrixWorld(t *testing.T) (*matrixWorld, string) {
	t.Helper()
	isolate(t)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"hello/Kbuild":      "obj-m := hello.o\n",
		"hello/hello.c":     "int x;\n",
		"einval/Kbuild":     "obj-m := einval.o\n",
		"einval/einval.c":   "int y;\n",
		"debug.yaml":        "kernel:\n  debug: true\n",
		"not-a-module/x.md": "nothing to build\n",
	})
	w := &matrixWorld{lv: vmtest.NewLibvirt(), badKernels: map[string]bool{}, loadFails: map[string]string{}}
	w.lv.SetNode(4, 16384)
	return w, dir
}

// The exit code of the first cell that did not pass; every cell's VM is its own, started
// by the run, named after its kernel; every kernel prepared once, in the order named.
func TestMatrixCLI(t *testing.T) {
	for _, tt := range []struct {
		name       string
		args       []string
		badKernels []string
		loadFails  map[string]string
		wantCode   int
		wantRows   []string // regexps, one row of the table each, in order
		wantPrep   []string
		host       string // the host the cells run on ("" qemu:///system)
	}{
		{
			name: "all pass", args: []string{"--suite", "sid", "--suite", "trixie", "hello", "einval"},
			wantCode: exitOK, wantPrep: []string{"sid", "trixie"},
			wantRows: []string{`^sid \(7.2.13-kmodvm\)\s+hello\s+qemu:///system\s+PASSED\s+\d+\.\d s\s+loaded and unloaded cleanly`,
				`^sid .*einval .*PASSED`, `^trixie .*hello .*PASSED`, `^trixie .*einval .*PASSED`,
				`^matrix: 4 passed, 0 failed, 0 errors in`},
		},
		{
			name: "a module fails to load on one kernel", args: []string{"--suite", "sid", "--config", "debug.yaml", "hello", "einval"},
			loadFails: map[string]string{"einval": "debug"}, wantCode: exitLoadFailed, wantPrep: []string{"sid", "debug.yaml"},
			wantRows: []string{`^sid .*hello .*PASSED`, `^sid .*einval .*PASSED`, `^debug.yaml .*hello .*PASSED`,
				`^debug.yaml .*einval .*FAILED .*insmod failed: Invalid parameters`, `^matrix: 3 passed, 1 failed, 0 errors`},
		},
		{
			name: "a kernel does not build", args: []string{"--suite", "trixie", "--suite", "sid", "hello"},
			badKernels: []string{"trixie"}, wantCode: exitFailure, wantPrep: []string{"trixie", "sid"},
			wantRows: []string{`^trixie\s+hello\s+-\s+ERROR .*kernel trixie not built: make: \*\*\* \[Makefile:1234: vmlinux\] Error 2`,
				`^sid .*hello .*PASSED`, `^matrix: 1 passed, 0 failed, 1 error in`},
		},
		{
			name: "the project's kernel by default", args: []string{"hello"},
			wantCode: exitOK, wantPrep: []string{"sid"}, wantRows: []string{`^sid .*hello .*PASSED`},
		},
		{
			name: "a remote host", args: []string{"--host", "qemu+ssh://root@lab/system", "hello", "einval"},
			wantCode: exitOK, wantPrep: []string{"sid"}, host: "qemu+ssh://root@lab/system",
			wantRows: []string{`^sid .*hello\s+qemu\+ssh://root@lab/system\s+PASSED`, `^sid .*einval\s+qemu\+ssh://root@lab/system\s+PASSED`},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, dir := newMatrixWorld(t)
			for _, k := range tt.badKernels {
				w.badKernels[k] = true
			}
			if tt.loadFails != nil {
				w.loadFails = tt.loadFails
			}
			r := w.run(t, dir, append([]string{"matrix"}, tt.args...)...)
			if r.code != tt.wantCode {
				t.Fatalf("exit %d, want %d", r.code, tt.wantCode)
			}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if !strings.HasPrefix(lines[0], "KERNEL") {
				t.Fatalf("no table header: %q", lines[0])
			}
			for i, re := range tt.wantRows {
				if i+1 >= len(lines) || !regexp.MustCompile(re).MatchString(lines[i+1]) {
					t.Errorf("row %d does not match %s:\n%s", i+1, re, r.stdout)
				}
			}
			if !slices.Equal(w.prepared, tt.wantPrep) {
				t.Errorf("kernels prepared %v, want %v", w.prepared, tt.wantPrep)
			}
			seen := map[string]bool{}
			for i, name := range w.opened {
				if seen[name] || !strings.HasPrefix(name, "mx-") || sandbox.CheckName(name) != nil || !w.ups[i] {
					t.Errorf("VM %q (up %v): each cell must start a VM of its own with a valid mx- name; all: %v", name, w.ups[i], w.opened)
				}
				seen[name] = true
			}
			host := cmp.Or(tt.host, "qemu:///system")
			if !strings.Contains(r.stderr, "KERNEL") || !strings.Contains(r.stderr, "running on "+host) {
				t.Errorf("no live progress table on stderr:\n%s", r.stderr)
			}
		})
	}
}

// --json and --junit carry every cell: verdict, exit code, the module's report.
func TestMatrixReports(t *testing.T) {
	gold, err := filepath.Abs(filepath.Join("testdata", "junit-matrix.xml")) // before the run's chdir
	if err != nil {
		t.Fatal(err)
	}
	w, dir := newMatrixWorld(t)
	w.loadFails["einval"] = "sid"
	w.badKernels["trixie"] = true
	junitPath := filepath.Join(dir, "matrix.xml")
	r := w.run(t, dir, "matrix", "--json", "--junit", junitPath, "--suite", "sid", "--suite", "trixie", "hello", "einval")
	if r.code != exitLoadFailed {
		t.Fatalf("exit %d, want %d (the first cell that failed)", r.code, exitLoadFailed)
	}
	var got matrixJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("--json is not one JSON object: %v\n%s", err, r.stdout)
	}
	type cell struct {
		kernel, module, verdict string
		code                    int
	}
	var cells []cell
	for _, c := range got.Cells {
		cells = append(cells, cell{c.Kernel, c.Module, c.Verdict, c.ExitCode})
	}
	want := []cell{{"sid", "hello", "passed", 0}, {"sid", "einval", "failed", exitLoadFailed},
		{"trixie", "hello", "error", exitFailure}, {"trixie", "einval", "error", exitFailure}}
	if !slices.Equal(cells, want) || got.Schema != schemaMatrix || got.Passed != 1 || got.Failed != 1 || got.Errors != 2 || got.ExitCode != exitLoadFailed {
		t.Errorf("--json cells %+v (passed %d failed %d errors %d exit %d), want %+v", cells, got.Passed, got.Failed, got.Errors, got.ExitCode, want)
	}
	if !strings.Contains(got.Cells[1].Log, "einval: init returned -22") || !strings.Contains(got.Cells[1].Log, "verdict: load-failed") {
		t.Errorf("the failed cell's log lacks the module's report:\n%s", got.Cells[1].Log)
	}
	xml, err := os.ReadFile(junitPath)
	if err != nil {
		t.Fatal(err)
	}
	durations := regexp.MustCompile(`time="[0-9.]+"`)
	golden.Check(t, gold, durations.ReplaceAll(xml, []byte(`time="T"`)))
}

// What the matrix is asked is checked before any kernel builds: a usage error (exit 2) with
// a hint.
func TestMatrixUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown suite", []string{"--suite", "bookworm", "hello"}, `--suite bookworm: image.suite: `},
		{"suite twice", []string{"--suite", "sid", "--suite", "sid", "hello"}, "the kernel sid is named twice; hint:"},
		{"missing config", []string{"--config", "nope.yaml", "hello"}, "--config nope.yaml: no such file; hint:"},
		{"not a module", []string{"not-a-module"}, "not-a-module"},
		{"host twice", []string{"--host", "qemu:///system", "--host", "qemu:///system", "hello"}, "named twice; hint:"},
		{"negative jobs", []string{"--jobs", "-1", "hello"}, "--jobs -1 is not a number of cells; hint:"},
		{"junit in a missing dir", []string{"--junit", "no/such/dir/m.xml", "hello"}, "does not exist; hint: create it first"},
		{"VMs too big for the host", []string{"hello"}, "no host has room for one VM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, dir := newMatrixWorld(t)
			if tt.name == "VMs too big for the host" {
				w.lv.SetNode(1, 512)
			}
			r := w.run(t, dir, append([]string{"matrix"}, tt.args...)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "hint") {
				t.Errorf("exit %d, stderr %q; want exit %d saying %q with a hint", r.code, r.stderr, exitUsage, tt.want)
			}
			if len(w.prepared) != 0 || len(w.opened) != 0 {
				t.Errorf("a usage error built kernels %v or started VMs %v", w.prepared, w.opened)
			}
		})
	}
}

func TestVMTag(t *testing.T) {
	for label, want := range map[string]string{
		"sid": "sid", "trixie": "trixie", "configs/debug.yaml": "debug", "sid (kmodvm.yaml)": "sid-kmodvm",
		"../My_Variant.v2.yaml": "my-variant-v", "///": "k", "a-very-long-kernel-name.yaml": "a-very-long",
	} {
		if got := vmTag(label); got != want {
			t.Errorf("vmTag(%q) = %q, want %q", label, got, want)
		}
	}
}

var _ matrix.Runner = (*matrixRunner)(nil)

// Ctrl-C during the cells: exit 130, the cells not finished are errors saying so, and every
// cell's VM is removed all the same.
func TestMatrixInterrupted(t *testing.T) {
	w, dir := newMatrixWorld(t)
	w.lv.SetNode(2, 16384) // room for 2 VMs: the third cell waits
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w.ctx = ctx
	var running sync.WaitGroup
	running.Add(2)
	go func() { running.Wait(); cancel() }() // both cells of this host are in their VMs
	w.block = func(ctx context.Context) {
		running.Done()
		<-ctx.Done()
	}
	r := w.run(t, dir, "matrix", "--suite", "sid", "hello", "einval", "hello/../einval")
	if r.code != exitInterrupted {
		t.Fatalf("exit %d, want %d", r.code, exitInterrupted)
	}
	if !strings.Contains(r.stdout, "ERROR") || !strings.Contains(r.stdout, "not run: context canceled") {
		t.Errorf("the table does not show the cells the interrupt stopped:\n%s", r.stdout)
	}
	lookups := strings.Join(w.lv.Calls("DomainLookupByName"), "\n")
	for _, name := range w.opened {
		if !strings.Contains(lookups, "-"+name) {
			t.Errorf("VM %s was not removed after the interrupt (libvirt calls: %s)", name, lookups)
		}
	}
	if len(w.opened) != 2 {
		t.Errorf("VMs opened %v, want the 2 the host holds", w.opened)
	}
}
