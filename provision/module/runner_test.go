package module

import (
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/vm/remedy"
)

// waitFile waits until the fake guest's file name exists: evidence that a phase is under way.
func (g *fakeGuest) waitFile(ctx context.Context, name string) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := os.Stat(filepath.Join(g.dir, name)); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Every verdict, from the whole loop (sync, build, load, unload, judge) against the fake
// guest, with guest and host builds.
func TestRunVerdicts(t *testing.T) {
	const okMake = "echo '  CC [M]  hello.o'; echo ko > hello.ko"
	cases := []struct {
		name      string
		where     string
		host      string            // the host build's make (BuildHost)
		fakes     map[string]string // $G/insmod.sh, rmmod.sh, make.sh
		reload    int
		verdict   string
		title     string // part of the title
		steps     int
		stepError string // part of the first failed step's Error
		log       string // part of the first step's log
	}{
		{name: "ok, guest build", where: BuildGuest, verdict: VerdictOK, title: "ok", steps: 2, log: "hello: loaded"},
		{name: "ok, host build", where: BuildHost, host: okMake, verdict: VerdictOK, title: "ok", steps: 2, log: "hello: loaded"},
		{name: "ok, reloaded", where: BuildGuest, reload: 3, verdict: VerdictOK, title: "ok", steps: 6},
		{name: "guest build failed", where: BuildGuest, fakes: map[string]string{"make.sh": `echo "hello.c:1:1: error: expected ';'" >&2; exit 2`},
			verdict: VerdictBuildFailed, title: "did not build"},
		{name: "host build failed", where: BuildHost, host: `echo "hello.c:1:1: error: expected ';'" >&2; exit 2`,
			verdict: VerdictBuildFailed, title: "did not build"},
		{name: "build made no module", where: BuildHost, host: "true", verdict: VerdictBuildFailed, title: "did not build"},
		{name: "load failed", where: BuildGuest, fakes: map[string]string{"insmod.sh": `klog 3 "hello: Unknown symbol not_a_symbol (err -2)"; echo "insmod: ERROR: could not insert module $1: Unknown symbol in module" >&2; exit 1`},
			verdict: VerdictLoadFailed, title: "load hello failed", steps: 1, stepError: "does not export"},
		{name: "unload failed", where: BuildGuest, fakes: map[string]string{"rmmod.sh": `echo "rmmod: ERROR: Module hello is in use" >&2; exit 1`},
			verdict: VerdictLoadFailed, title: "unload hello failed", steps: 2, stepError: "in use"},
		{name: "WARNING", where: BuildGuest, fakes: map[string]string{"insmod.sh": `klog 4 "WARNING: CPU: 0 PID: 95 at hello.c:10 hello_init+0x1/0x2 [hello]"; klog 4 "---[ end trace 0000000000000000 ]---"`},
			verdict: VerdictKernelProblem, title: "hello_init", steps: 2, log: "WARNING"},
		{name: "Oops", where: BuildGuest, fakes: map[string]string{"insmod.sh": `klog 1 "BUG: kernel NULL pointer dereference, address: 0000000000000000"; klog 4 "---[ end trace 0000000000000000 ]---"; exit 137`},
			verdict: VerdictKernelProblem, title: "NULL pointer dereference", steps: 1},
		{name: "taint", where: BuildGuest, fakes: map[string]string{"insmod.sh": `taint 1`},
			verdict: VerdictKernelProblem, title: "kernel taint added", steps: 2},
		{name: "a warning at unload", where: BuildGuest, fakes: map[string]string{"rmmod.sh": `klog 4 "WARNING: CPU: 0 PID: 95 at hello.c:20 hello_exit+0x1/0x2 [hello]"`},
			verdict: VerdictKernelProblem, title: "hello_exit", steps: 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGuest(t)
			for name, code := range c.fakes {
				g.write(name, code, 0o644)
			}
			r := g.runner(shellToolchain{c.host})
			defer r.Close()
			var status []string
			opt := Options{Source: moduleSource(t), Where: c.where, Reload: c.reload, BuildDir: filepath.Join(t.TempDir(), "build"),
				Status: func(s string) { status = append(status, s) }}
			res, err := r.Run(testCtx(t), opt)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Verdict != c.verdict || !strings.Contains(res.Title, c.title) {
				t.Fatalf("verdict %q %q, want %q with %q; steps %+v; build %+v", res.Verdict, res.Title, c.verdict, c.title, res.Steps, res.Build)
			}
			if len(res.Steps) != c.steps {
				t.Errorf("%d steps, want %d: %+v", len(res.Steps), c.steps, res.Steps)
			}
			if c.verdict == VerdictBuildFailed && c.host != "true" && !strings.Contains(res.Build.Output, "hello.c:1:1: error") {
				t.Errorf("build output %q lacks the compiler's error", res.Build.Output)
			}
			if c.stepError != "" {
				i := slices.IndexFunc(res.Steps, func(s Step) bool { return !s.OK })
				if i < 0 || !strings.Contains(res.Steps[i].Error, c.stepError) {
					t.Errorf("steps %+v: want a failed one saying %q", res.Steps, c.stepError)
				}
			}
			if c.log != "" && !strings.Contains(logText(res.Steps[0]), c.log) {
				t.Errorf("first step's log %q lacks %q", res.Steps[0].Log, c.log)
			}
			for _, st := range res.Steps {
				if strings.Contains(logText(st), "booted") || strings.Contains(logText(st), "sshd started") {
					t.Errorf("step %s judged records from before it: %q", st.Action, st.Log)
				}
			}
			if !slices.Contains([]string{VerdictOK, VerdictBuildFailed, VerdictLoadFailed, VerdictKernelProblem}, res.Verdict) {
				t.Errorf("verdict %q is none of the verdicts", res.Verdict)
			}
			if job := g.read("kmodvm.job"); job != "" {
				t.Errorf("the job file outlives the run: %q", job)
			}
		})
	}
}

// What a module logs between two steps (its kthread after insmod returned) is judged by the
// next step; records the guest overwrote before a step read them are counted as lost.
func TestStepsJudgeRecordsBetweenThemAndCountLost(t *testing.T) {
	g := newFakeGuest(t)
	g.write("insmod.sh", `echo 100 > "$G/seq"; klog 6 "hello: after a burst"`, 0o644)
	r := g.runner(nil)
	r.guest = g
	ctx, opt := testCtx(t), Options{Timeout: time.Minute}
	load, err := r.step(ctx, opt, "load", "hello", 1, "*.*", "hello", "/nowhere/hello.ko")
	if err != nil {
		t.Fatal(err)
	}
	if !load.OK || load.Lost != 94 || len(load.Log) != 2 {
		t.Fatalf("load %+v: want ok, 94 records lost (7-100), 2 read", load)
	}
	// The module's timer fires after the load step, while records 103-104 are overwritten.
	if err := appendFile(filepath.Join(g.dir, "kmsg"), "4,105,1,-;WARNING: CPU: 0 PID: 9 at hello.c:30 hello_timer+0x1/0x2 [hello]\n"); err != nil {
		t.Fatal(err)
	}
	g.write("seq", "105\n", 0o644)
	unload, err := r.step(ctx, opt, "unload", "hello", 1, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(unload.Findings) == 0 || !strings.Contains(unload.Findings[0].Title, "hello_timer") {
		t.Errorf("unload findings %+v, want the timer's WARNING", unload.Findings)
	}
	if unload.Lost != 2 {
		t.Errorf("unload lost %d, want 2 (103-104)", unload.Lost)
	}
	if got := g.read("modules"); got != "" {
		t.Errorf("modules %q after the unload", got)
	}
}

// A module of the same name an earlier run left loaded is unloaded first, and the user is told.
func TestRunUnloadsAStaleModule(t *testing.T) {
	g := newFakeGuest(t)
	g.write("modules", "hello 16384 0 - Live 0x0\n", 0o644)
	r := g.runner(nil)
	defer r.Close()
	var status []string
	res, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest, Keep: true, Status: func(s string) { status = append(status, s) }})
	if err != nil || res.Verdict != VerdictOK {
		t.Fatalf("res %+v err %v", res, err)
	}
	if !slices.ContainsFunc(status, func(s string) bool { return strings.Contains(s, "already loaded; unloaded it first") }) {
		t.Errorf("status %q does not tell the stale module was unloaded", status)
	}
	if got := g.read("modules"); strings.Count(got, "hello ") != 1 {
		t.Errorf("--keep: modules %q, want hello loaded once", got)
	}
}

func appendFile(p, s string) error {
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// A module of the same name left loaded that cannot be unloaded ends the run with a remedy.
func TestRunStaleModuleStuck(t *testing.T) {
	g := newFakeGuest(t)
	g.write("modules", "hello 16384 1 - Live 0x0\n", 0o644)
	g.write("rmmod.sh", `echo "rmmod: ERROR: Module hello is in use" >&2; exit 1`, 0o644)
	r := g.runner(nil)
	defer r.Close()
	_, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("err = %v, want the module in use", err)
	}
	if re := remedy.Find(err); re == nil || !slices.Contains(re.Do, remedy.RestartVM) {
		t.Errorf("remedy %+v, want a restart", re)
	}
}

// A guest that dies during the load (a panic: the console has the story) or hangs in it
// (no progress within the timeout) is a kernel problem; the guest is restarted, and the
// guest's job is not left running. A hung guest is first asked where it is stuck: SysRq w
// over SSH, then an NMI, whose panic trace (captured from kmodvm's kernel with a KUnit test
// spinning with interrupts off) names the function.
func TestRunGuestDiesOrHangs(t *testing.T) {
	nmiConsole, err := os.ReadFile("testdata/nmi-hang-console.txt")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		insmod  string
		nmi     string // what the guest's kernel prints on kmodvm's NMI
		timeout time.Duration
		title   string
		errText string
		nmis    int
	}{
		{"panic", `printf '[    2.000000] Kernel panic - not syncing: hello: boom\n[    2.000001] ---[ end Kernel panic - not syncing: hello: boom ]---\n' >> "$G/console.log"; : > "$G/dead"; sleep 60`,
			"", 0, "Kernel panic", "the guest stopped", 0},
		{"hung, the NMI ignored", `sleep 60`, "", time.Second, "guest died or hung while running load hello: no progress within 1s (hung?)", "no progress within 1s", 1},
		{"hung with interrupts off", `sleep 60`, string(nmiConsole), time.Second,
			"guest hung while running load hello: no progress within 1s (hung?); its CPU was in kunit_crash_c_oops [kunit_crash_c]", "no progress within 1s", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGuest(t)
			g.write("insmod.sh", c.insmod, 0o644)
			if c.nmi != "" {
				g.write("nmi-console", c.nmi, 0o644)
			}
			r := g.runner(nil)
			defer r.Close()
			res, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest, Timeout: c.timeout})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != VerdictKernelProblem || !strings.Contains(res.Title, c.title) || !res.Restart {
				t.Fatalf("verdict %q %q restart %v, want a kernel problem with %q and a restart", res.Verdict, res.Title, res.Restart, c.title)
			}
			if st := res.Steps[0]; !st.Crashed || !strings.Contains(st.Error, c.errText) {
				t.Errorf("step %+v: want crashed, %q", st, c.errText)
			}
			if g.restarts != 1 {
				t.Errorf("%d restarts, want 1", g.restarts)
			}
			if g.nmis != c.nmis {
				t.Errorf("%d NMIs sent, want %d", g.nmis, c.nmis)
			}
			if sysrq := g.read("sysrq-trigger"); (c.nmis > 0) != (sysrq == "w\n") {
				t.Errorf("SysRq trigger got %q; want w exactly when the guest hung", sysrq)
			}
		})
	}
}

// A guest stopped from outside during a load is not judged nor restarted behind the back of
// whoever stopped it.
func TestRunGuestStoppedFromOutside(t *testing.T) {
	g := newFakeGuest(t)
	g.outside = "destroyed"
	g.write("insmod.sh", `: > "$G/dead"; sleep 60`, 0o644)
	r := g.runner(nil)
	defer r.Close()
	_, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest})
	if err == nil || !strings.Contains(err.Error(), "stopped from outside") {
		t.Fatalf("err = %v", err)
	}
	if re := remedy.Find(err); re == nil || !slices.Contains(re.Do, remedy.StartVM) {
		t.Errorf("remedy %+v, want start", re)
	}
	if g.restarts != 0 {
		t.Errorf("restarted %d times", g.restarts)
	}
}

// The SSH connection cut during a load (the guest still runs): the step counts as a guest
// that died, and the guest is restarted.
func TestRunSSHCutDuringLoad(t *testing.T) {
	g := newFakeGuest(t)
	g.write("insmod.sh", `: > "$G/loading"; sleep 60`, 0o644)
	r := g.runner(nil)
	defer r.Close()
	ctx := testCtx(t)
	go func() {
		if g.waitFile(ctx, "loading") == nil {
			g.srv.DropConnections()
		}
	}()
	res, err := r.Run(ctx, Options{Source: moduleSource(t), Where: BuildGuest})
	if err != nil {
		t.Fatal(err)
	}
	if st := res.Steps[0]; !st.Crashed || !strings.Contains(st.Error, "SSH connection to the guest was lost") || !res.Restart {
		t.Errorf("step %+v restart %v: want a lost connection and a restart", st, res.Restart)
	}
}

// A connection that breaks before the sync (at the first exchange: the check of the guest
// kernel's taint), with the guest gone, says so and points at the console log.
func TestRunGuestGoneDuringSync(t *testing.T) {
	g := newFakeGuest(t)
	g.write("dead", "", 0o644)
	g.Close() // the connection is gone before the sync starts
	r := g.runner(nil)
	_, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest})
	if err == nil || !strings.Contains(err.Error(), "the guest stopped during the check of the kernel's taint") || !strings.Contains(err.Error(), "console.log tells why") {
		t.Fatalf("err = %v", err)
	}
}

// Ctrl-C during the guest build or during a load: an error wrapping context.Canceled, no
// verdict, and the guest's job (make, insmod) stopped before Run returns.
func TestRunInterruptedInTheGuest(t *testing.T) {
	cases := []struct{ name, file, code string }{
		{"guest build", "make.sh", `: > "$G/started"; sleep 60; echo ko > hello.ko`},
		{"load", "insmod.sh", `: > "$G/started"; sleep 60`},
		{"unload", "rmmod.sh", `: > "$G/started"; sleep 60`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGuest(t)
			g.write(c.file, c.code, 0o644)
			r := g.runner(nil)
			defer r.Close()
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			go func() {
				if g.waitFile(ctx, "started") == nil {
					cancel()
				}
			}()
			var status []string
			res, err := r.Run(ctx, Options{Source: moduleSource(t), Where: BuildGuest, Status: func(s string) { status = append(status, s) }})
			if !errors.Is(err, context.Canceled) || res != nil {
				t.Fatalf("res %+v err %v, want no result and context.Canceled", res, err)
			}
			if !slices.ContainsFunc(status, func(s string) bool { return strings.HasPrefix(s, "interrupted: stopped the") }) {
				t.Errorf("status %q: the job was not stopped", status)
			}
			if job := g.read("kmodvm.job"); job != "" {
				t.Errorf("job file left: %q", job)
			}
			wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer wcancel()
			if err := g.srv.WaitIdle(wctx); err != nil {
				t.Errorf("the guest's job still runs: %v", err)
			}
		})
	}
}

// A job an earlier run left running when its connection was cut (a make) is stopped when
// the next run's first job starts, so the two never compete.
func TestLeftoverJobIsStopped(t *testing.T) {
	g := newFakeGuest(t)
	g.write("make.sh", `if [ ! -f "$G/first" ]; then : > "$G/first"; sleep 60; fi`, 0o644)
	ctx := testCtx(t)
	dir := filepath.Join(g.files.Root, "leftover")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	go g.SSH().Run(ctx, g.files.guestCommand("build", dir), nil, io.Discard, io.Discard)
	if err := g.waitFile(ctx, "first"); err != nil {
		t.Fatal(err)
	}
	g.srv.DropConnections() // the make runs on, like one under sshd
	g.dial()

	r := g.runner(nil)
	defer r.Close()
	res, err := r.Run(ctx, Options{Source: moduleSource(t), Where: BuildGuest})
	if err != nil || res.Verdict != VerdictOK {
		t.Fatalf("res %+v err %v", res, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := g.srv.WaitIdle(wctx); err != nil {
		t.Errorf("the leftover make still runs: %v", err)
	}
}

// The guest build's output keeps every line of both of make's streams (the SSH session
// copies them concurrently).
func TestGuestBuildKeepsBothStreams(t *testing.T) {
	g := newFakeGuest(t)
	g.write("make.sh", `i=0; while [ $i -lt 300 ]; do echo "out $i"; echo "err $i" >&2; i=$((i + 1)); done; exit 2`, 0o644)
	r := g.runner(nil)
	defer r.Close()
	res, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest})
	if err != nil || res.Verdict != VerdictBuildFailed {
		t.Fatalf("res %+v err %v", res, err)
	}
	for _, want := range []string{"out 0\n", "err 0\n", "out 299\n", "err 299\n"} {
		if !strings.Contains(res.Build.Output, want) {
			t.Errorf("build output lacks %q", want)
		}
	}
	if n := strings.Count(res.Build.Output, "\n"); n < 600 {
		t.Errorf("build output has %d lines, want 600", n)
	}
}

// The result says how the guest was recovered: by restoring its pristine save (and what that
// discards) or by a reboot.
func TestRunSaysHowTheGuestRecovered(t *testing.T) {
	const oops = `klog 1 "BUG: kernel NULL pointer dereference, address: 0000000000000000"; klog 4 "---[ end trace 0000000000000000 ]---"; taint 4224; exit 137`
	cases := []struct {
		recovery, want, note string
	}{
		{"restored", "restored", "by restoring its pristine save: the guest's own changes since its up are gone"},
		{"rebooted", "rebooted", ""},
	}
	for _, c := range cases {
		t.Run(c.recovery, func(t *testing.T) {
			g := newFakeGuest(t)
			g.recovery = c.recovery
			g.write("tainted", "0\n", 0o644)
			g.write("insmod.sh", oops, 0o644)
			r := g.runner(nil)
			defer r.Close()
			res, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest})
			if err != nil {
				t.Fatal(err)
			}
			if !res.Restart || res.RecoveredBy != c.want {
				t.Errorf("restarted %v, recovered by %q; want a restart by %q", res.Restart, res.RecoveredBy, c.want)
			}
			notes := strings.Join(res.Notes, "\n")
			if c.note != "" && !strings.Contains(notes, c.note) {
				t.Errorf("notes %q, want one with %q", notes, c.note)
			}
			if c.note == "" && strings.Contains(notes, "pristine save") {
				t.Errorf("notes %q speak of a restore after a reboot", notes)
			}
		})
	}
	// Without a restart, nothing is said.
	g := newFakeGuest(t)
	g.write("tainted", "0\n", 0o644)
	r := g.runner(nil)
	defer r.Close()
	res, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest})
	if err != nil {
		t.Fatal(err)
	}
	if res.RecoveredBy != "" || strings.Contains(strings.Join(res.Notes, " "), "recovered the guest") {
		t.Errorf("a run without a restart says recovered by %q, notes %q", res.RecoveredBy, res.Notes)
	}
}

// A kernel that oopsed (taint D) lives on but cannot be trusted, and a module whose init
// oopsed stays stuck loading: the guest is restarted after the run that oopsed it, and before
// a run when it oopsed since the last one; a warning (taint W) restarts nothing.
func TestRunRecoversAnOopsedKernel(t *testing.T) {
	const oops = `klog 1 "BUG: kernel NULL pointer dereference, address: 0000000000000000"; klog 4 "---[ end trace 0000000000000000 ]---"; taint 4224; exit 137`
	cases := []struct {
		name     string
		tainted  string // the taint flags before the run
		insmod   string
		verdict  string
		restarts int
		note     string
	}{
		{"an oops in the load", "0", oops, VerdictKernelProblem, 1, "the kernel oopsed (taint D)"},
		{"oopsed before the run", "4224", "", VerdictOK, 1, "had oopsed before this run (taint flags DO)"},
		{"oopsed before the run and in it", "128", oops, VerdictKernelProblem, 2, "the kernel oopsed (taint D)"},
		{"a warning", "0", `klog 4 "WARNING: CPU: 0 PID: 95 at hello.c:10 hello_init+0x1/0x2 [hello]"; taint 512`, VerdictKernelProblem, 0, ""},
		{"a clean kernel", "0", "", VerdictOK, 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := newFakeGuest(t)
			g.write("tainted", c.tainted+"\n", 0o644)
			g.write("insmod.sh", c.insmod, 0o644)
			r := g.runner(nil)
			defer r.Close()
			res, err := r.Run(testCtx(t), Options{Source: moduleSource(t), Where: BuildGuest})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != c.verdict {
				t.Errorf("verdict %q %q, want %q", res.Verdict, res.Title, c.verdict)
			}
			if g.restarts != c.restarts || res.Restart != (c.restarts > 0) {
				t.Errorf("%d restarts, result says restarted=%v; want %d", g.restarts, res.Restart, c.restarts)
			}
			notes := strings.Join(res.Notes, "\n")
			if (c.note == "") != (notes == "") || !strings.Contains(notes, c.note) {
				t.Errorf("notes %q, want one with %q", notes, c.note)
			}
			if g.read("tainted") != "0\n" && c.restarts > 0 {
				t.Errorf("the guest was not left on a fresh kernel: taint %q", g.read("tainted"))
			}
		})
	}
}

// HostBuilds finds the sources and modules of the module directories built on the host,
// from what each build recorded beside its directory: not a record whose directory name
// does not match it, not sources that are gone.
func TestHostBuilds(t *testing.T) {
	dir, srcs := t.TempDir(), t.TempDir()
	hello, gone := filepath.Join(srcs, "hello"), filepath.Join(srcs, "gone")
	if err := os.Mkdir(hello, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		path.Base(RemoteDir(hello)): hello,
		path.Base(RemoteDir(gone)):  gone,
		"other-12345678":            hello, // a name this source does not have
	} {
		if err := os.WriteFile(filepath.Join(dir, name+SourceSuffix), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"hello-world.ko", "util.ko", "hello.o"} {
		if err := os.WriteFile(filepath.Join(dir, path.Base(RemoteDir(hello)), f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := HostBuilds(dir)
	want := []HostBuilt{{Remote: RemoteDir(hello), Source: hello, Modules: []string{"hello_world", "util"}}}
	if len(got) != 1 || got[0].Remote != want[0].Remote || got[0].Source != want[0].Source || !slices.Equal(got[0].Modules, want[0].Modules) {
		t.Errorf("HostBuilds = %+v, want %+v", got, want)
	}
}
