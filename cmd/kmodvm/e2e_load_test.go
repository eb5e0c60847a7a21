package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kmodvm/kmodvm/provision/module"
)

// TestE2ELoad: the load tests, on one guest. 100 load/unload cycles of the Rust
// example leave the guest's memory where they found it; `logs -f` follows 100,000 kernel
// log lines with bounded memory, and when a module outpaces it, it says exactly how many
// records the guest overwrote and carries on.
func TestE2ELoad(t *testing.T) {
	e2eEnv(t)
	ctx := context.Background()
	name, _ := e2eVM(t, "load")
	n := []string{"-n", name}
	mustCLI(t, ctx, append([]string{"up"}, n...)...)

	t.Run("Reload100", func(t *testing.T) { testReload100(t, ctx, n) })
	t.Run("RunFlood", func(t *testing.T) { testRunFlood(t, ctx, n) })
	t.Run("LogsFollow", func(t *testing.T) { testLogsFollow(t, ctx, n) })
}

// Tolerances for the guest's memory after 100 load/unload cycles, from measurements on a
// TCG guest (7.2 kernel, SLUB_TINY, 2 GiB): with rust_hello loaded, slab is ~30 KiB higher
// and vmalloc 2 MiB + 24 KiB (execmem's ROX cache and the module's data); unloaded, the
// median of 5 slab samples moved by +8 to +48 KiB after 100 to 300 cycles (6 runs), single
// samples by ±40 KiB, VmallocUsed between 12 and 16 KiB, MemAvailable by ~250 KiB, Percpu
// not at all.
const (
	slabTolerance     = 128 << 10 // a leak of ~1.3 KiB of slab per cycle exceeds it
	vmallocTolerance  = 64 << 10  // a leaked module image (>= 20 KiB each) exceeds it
	availDropAllowed  = 2 << 20   // 8x the noise
	memSamples        = 5
	memSampleInterval = "0.2"
)

// guestMem is a memory snapshot of the guest, in bytes: the median of memSamples readings
// of each /proc/meminfo field, and the number of /proc/vmallocinfo entries the module
// loader made (execmem, module_*).
type guestMem struct {
	fields        map[string]int64
	moduleVmalloc int
}

func readGuestMem(t *testing.T, ctx context.Context, n []string) guestMem {
	t.Helper()
	script := fmt.Sprintf(`for i in $(seq %d); do grep -E '^(MemAvailable|Slab|VmallocUsed|Percpu):' /proc/meminfo; sleep %s; done; `+
		`echo "ModuleVmalloc: $(grep -cE 'execmem|module' /proc/vmallocinfo)"`, memSamples, memSampleInterval)
	out := mustCLI(t, ctx, append(n, "exec", "--", "sh", "-c", script)...)
	samples := map[string][]int64{}
	m := guestMem{fields: map[string]int64{}, moduleVmalloc: -1}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		x, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("guest memory: %q: %v", l, err)
		}
		if k == "ModuleVmalloc" {
			m.moduleVmalloc = int(x)
			continue
		}
		samples[k] = append(samples[k], x<<10) // kB
	}
	for _, k := range []string{"MemAvailable", "Slab", "VmallocUsed", "Percpu"} {
		s := samples[k]
		if len(s) != memSamples {
			t.Fatalf("guest memory: %d samples of %s, want %d:\n%s", len(s), k, memSamples, out)
		}
		slices.Sort(s)
		m.fields[k] = s[len(s)/2]
	}
	if m.moduleVmalloc < 0 {
		t.Fatalf("guest memory: no vmallocinfo count:\n%s", out)
	}
	return m
}

// runQuiet is `kmodvm run --json ARGS`, called directly rather than through cli: the
// JSON of hundreds of steps or thousands of log lines is too long to log.
func runQuiet(t *testing.T, ctx context.Context, args ...string) (int, runJSON) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, append([]string{"run", "--json"}, args...), strings.NewReader(""), &out, &errb)
	var res runJSON
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Result == nil {
		t.Fatalf("kmodvm run --json %s: exit %d, %v\nstdout:\n%.2000s\nstderr:\n%s", strings.Join(args, " "), code, err, out.String(), errb.String())
	}
	return code, res
}

func testReload100(t *testing.T, ctx context.Context, n []string) {
	dir := filepath.Join(repoRoot(t), "examples/rust-hello")
	mustCLI(t, ctx, append(append([]string{"run"}, n...), dir)...) // warm-up: sync, build, first load
	before := readGuestMem(t, ctx, n)

	start := time.Now()
	code, res := runQuiet(t, ctx, append(n, "--reload", "100", dir)...)
	took := time.Since(start)
	t.Logf("run --reload 100: exit %d, verdict %q, %d steps, %.1f s (build %.1f s)", code, res.Verdict, len(res.Steps), took.Seconds(), res.Build.Duration.Seconds())
	if code != 0 || res.ExitCode != 0 || res.Verdict != module.VerdictOK {
		t.Errorf("run --reload 100: exit %d, verdict %q (%s), want 0 and ok", code, res.Verdict, res.Title)
	}
	if len(res.Steps) != 200 {
		t.Errorf("%d steps, want 100 loads and 100 unloads", len(res.Steps))
	}
	for i, s := range res.Steps {
		action, greeting := "load", "Hello from Rust!"
		if i%2 == 1 {
			action, greeting = "unload", "Goodbye from Rust"
		}
		ok := s.Action == action && s.Iteration == i/2+1 && s.OK && len(s.Findings) == 0 && !s.Crashed &&
			slices.ContainsFunc(s.Log, func(l string) bool { return strings.Contains(l, greeting) })
		if !ok {
			t.Errorf("step %d: %s #%d ok=%v findings=%v error=%q log=%q; want a clean %s #%d that says %q",
				i, s.Action, s.Iteration, s.OK, s.Findings, s.Error, s.Log, action, i/2+1, greeting)
		}
	}

	after := readGuestMem(t, ctx, n)
	t.Logf("guest memory before -> after 100 cycles: %v -> %v; module vmalloc entries %d -> %d",
		before.fields, after.fields, before.moduleVmalloc, after.moduleVmalloc)
	if after.moduleVmalloc != before.moduleVmalloc {
		t.Errorf("module loader vmalloc entries: %d before, %d after: module memory was not freed", before.moduleVmalloc, after.moduleVmalloc)
	}
	grow := func(k string) int64 { return after.fields[k] - before.fields[k] }
	if g := grow("Slab"); g > slabTolerance {
		t.Errorf("slab grew by %d KiB over 100 cycles (tolerance %d KiB)", g>>10, slabTolerance>>10)
	}
	if g := grow("VmallocUsed"); g > vmallocTolerance {
		t.Errorf("VmallocUsed grew by %d KiB over 100 cycles (tolerance %d KiB)", g>>10, vmallocTolerance>>10)
	}
	if g := grow("Percpu"); g != 0 {
		t.Errorf("Percpu changed by %d KiB over 100 cycles, want 0", g>>10)
	}
	if d := -grow("MemAvailable"); d > availDropAllowed {
		t.Errorf("MemAvailable dropped by %d KiB over 100 cycles (allowed %d KiB)", d>>10, availDropAllowed>>10)
	}
}

// followRSSLimit bounds `logs -f`'s peak RSS. Measured over 100,000 lines: ~17 MiB (14 MiB
// over 1,000); the same binary made to keep every record it read peaked at 38 MiB.
const followRSSLimit = 32 << 20

// follower is a `kmodvm logs -f --json` subprocess and the records it prints.
type follower struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer  // read it once exited is closed
	recs   chan logLine  // what it printed, in order; closed when its stdout ends
	exited chan struct{} // closed once it has exited; then err is its exit
	err    error
}

func startFollower(t *testing.T, bin string, n []string) *follower {
	t.Helper()
	f := &follower{recs: make(chan logLine, 4096), exited: make(chan struct{})}
	f.cmd = exec.Command(bin, append(n, "logs", "-f", "--json")...)
	f.cmd.Stderr = &f.stderr
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a test that failed half-way leaves no follower behind
		f.cmd.Process.Kill()
		for range f.recs {
		}
		<-f.exited
	})
	go func() {
		defer close(f.exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			var l logLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				l = logLine{Text: "unparsable: " + sc.Text()}
			}
			f.recs <- l
		}
		close(f.recs)
		f.err = f.cmd.Wait() // only after stdout was read to its end
	}()
	return f
}

// until returns the records printed up to and including the first one that matches; it
// fails the test if the follower ends or nothing matches within d (a stall).
func (f *follower) until(t *testing.T, d time.Duration, what string, match func(logLine) bool) []logLine {
	t.Helper()
	var recs []logLine
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-f.recs:
			if !ok {
				<-f.exited
				t.Fatalf("logs -f ended (%v) before %s; stderr:\n%s", f.err, what, f.stderr.String())
			}
			recs = append(recs, l)
			if match(l) {
				return recs
			}
		case <-timeout:
			t.Fatalf("logs -f printed no %s within %s (%d records meanwhile)", what, d, len(recs))
		}
	}
}

// stop interrupts the follower like Ctrl-C and waits for it to exit.
func (f *follower) stop(t *testing.T) {
	t.Helper()
	f.cmd.Process.Signal(os.Interrupt)
	timeout := time.After(time.Minute)
	for {
		select {
		case _, ok := <-f.recs:
			if !ok {
				<-f.exited
				return
			}
		case <-timeout:
			f.cmd.Process.Kill()
			t.Fatalf("logs -f did not exit within a minute of SIGINT")
		}
	}
}

// peakRSS is VmHWM of a running process, in bytes.
func peakRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// lostRange is one "lost N kernel log records (seq A-B)" notice of logs -f.
type lostRange struct{ from, n uint64 }

var lostNotice = regexp.MustCompile(`lost (\d+) kernel log records \(seq (\d+)-(\d+)\)`)

func parseLost(stderr string) []lostRange {
	var ls []lostRange
	for _, m := range lostNotice.FindAllStringSubmatch(stderr, -1) {
		n, _ := strconv.ParseUint(m[1], 10, 64)
		from, _ := strconv.ParseUint(m[2], 10, 64)
		ls = append(ls, lostRange{from, n})
	}
	return ls
}

var (
	spamLine    = regexp.MustCompile(`^spam: line (\d+)/(\d+)$`) // a record's text
	spamLogLine = regexp.MustCompile(`spam: line (\d+)/`)        // a line of run's report
)

// checkSpam accounts for every line of one spam run: recs are the records logs -f printed
// after the run's marker record (seq marker) up to "spam: done N". Each gap in their
// sequence numbers must be reported lost, exactly, and nothing else; the numbered lines
// must arrive in order, and each one missing must lie in a reported gap.
func checkSpam(recs []logLine, marker uint64, lost []lostRange, n int) (got int, problems []string) {
	reported := map[lostRange]bool{}
	for _, l := range lost {
		reported[l] = false
	}
	prev := marker
	line, lineSeq, between := 0, marker, 0 // the last numbered line, its seq, records since
	for _, r := range recs {
		if r.Seq <= prev {
			problems = append(problems, fmt.Sprintf("seq %d after %d: out of order", r.Seq, prev))
			continue
		}
		if gap := (lostRange{prev + 1, r.Seq - prev - 1}); gap.n > 0 {
			if _, ok := reported[gap]; !ok {
				problems = append(problems, fmt.Sprintf("records %d-%d never arrived and were not reported lost", gap.from, gap.from+gap.n-1))
			}
			reported[gap] = true
		}
		prev = r.Seq
		i := n + 1 // the done record stands for line N+1
		if m := spamLine.FindStringSubmatch(r.Text); m != nil && m[2] == strconv.Itoa(n) {
			i, _ = strconv.Atoi(m[1])
		} else if r.Text != fmt.Sprintf("spam: done %d", n) {
			between++
			continue
		}
		if i <= line {
			problems = append(problems, fmt.Sprintf("line %d after line %d", i, line))
			continue
		}
		lostHere := int(r.Seq-lineSeq-1) - between
		if missing := i - line - 1; missing > lostHere {
			problems = append(problems, fmt.Sprintf("lines %d-%d missing, but only %d records were reported lost there", line+1, i-1, lostHere))
		}
		if i <= n {
			got++
		}
		line, lineSeq, between = i, r.Seq, 0
	}
	for l, seen := range reported {
		if !seen && l.from > marker && l.from <= prev {
			problems = append(problems, fmt.Sprintf("reported %d records from seq %d lost, but they are no gap", l.n, l.from))
		}
	}
	return got, problems
}

// testRunFlood: a module whose kthread logs 30,000 lines, ~9 times the guest's log buffer,
// mostly after insmod has returned. Every line is judged by the load or the unload step
// (what comes between them goes to the unload) or counted as overwritten: none goes
// unmentioned.
func testRunFlood(t *testing.T, ctx context.Context, n []string) {
	const lines = 30_000
	dir := filepath.Join(repoRoot(t), "testdata/modules/spam-c")
	code, res := runQuiet(t, ctx, append(n, "-p", fmt.Sprintf("lines=%d", lines), "-p", "debug=1", dir)...)
	if code != 0 || res.Verdict != module.VerdictOK || len(res.Steps) != 2 {
		t.Fatalf("run: exit %d, verdict %q (%s), %d steps; want 0, ok, a load and an unload", code, res.Verdict, res.Title, len(res.Steps))
	}
	seen := map[int]bool{}
	shown, lost, done := 0, 0, false
	for _, s := range res.Steps {
		lost += s.Lost
		for _, l := range s.Log {
			if m := spamLogLine.FindStringSubmatch(l); m != nil {
				i, _ := strconv.Atoi(m[1])
				if seen[i] {
					t.Errorf("line %d shown twice", i)
				}
				seen[i] = true
				shown++
			}
			done = done || strings.HasSuffix(l, fmt.Sprintf("spam: done %d", lines))
		}
		t.Logf("%s #%d: %d log lines, %d records lost", s.Action, s.Iteration, len(s.Log), s.Lost)
	}
	if !done {
		t.Errorf("no step shows \"spam: done %d\"", lines)
	}
	if shown+lost < lines {
		t.Errorf("%d lines shown and %d records reported lost: %d of %d lines unaccounted for", shown, lost, lines-shown-lost, lines)
	}
}

func testLogsFollow(t *testing.T, ctx context.Context, n []string) {
	root := repoRoot(t)
	bin := kmodvmBinary(t)
	dir := filepath.Join(root, "testdata/modules/spam-c")
	mustCLI(t, ctx, append(append([]string{"run"}, n...), "-p", "lines=0", dir)...) // sync and build spam.ko
	ko := module.RemoteDir(dir) + "/spam.ko"

	f := startFollower(t, bin, n)
	if first := f.until(t, 2*time.Minute, "first record", func(logLine) bool { return true }); first[0].Source != "kmsg" {
		t.Fatalf("logs -f reads the %s, not /dev/kmsg over SSH: %+v", first[0].Source, first[0])
	}

	type spamRun struct {
		label  string
		lines  int
		params string
		recs   []logLine
		marker uint64
		stall  bool // stop the guest's reader (cat) until the last line is in the log
	}
	runs := []*spamRun{
		// Paced: 100 lines, then 10 ms of sleep; printk then outruns the reader only if
		// the reader stalls for the ~3,300 lines the 128 KiB ring buffer holds.
		{label: "paced", lines: 100_000, params: "debug=1 batch=100 pause_us=10000"},
		// A burst ~9 times the ring buffer, off the console, while the guest's reader is
		// stopped: whether a running reader keeps up depends on the machine, so the test
		// makes sure it cannot, and records are overwritten before it reads them.
		{label: "burst", lines: 30_000, params: "debug=1 pause_us=0", stall: true},
	}
	for _, r := range runs {
		marker := "kmodvm-load-test: " + r.label
		mustCLI(t, ctx, append(n, "exec", "--", "sh", "-c", "rmmod spam 2>/dev/null; echo '"+marker+"' >/dev/kmsg")...)
		m := f.until(t, 2*time.Minute, "marker "+marker, func(l logLine) bool { return l.Text == marker })
		r.marker = m[len(m)-1].Seq
		start := time.Now()
		done := fmt.Sprintf("spam: done %d", r.lines)
		load := fmt.Sprintf("insmod %s lines=%d %s", ko, r.lines, r.params)
		if r.stall {
			load = fmt.Sprintf("pkill -STOP -x cat && %s && until dmesg | grep -qF '%s'; do sleep 0.1; done; pkill -CONT -x cat", load, done)
		}
		mustCLI(t, ctx, append(n, "exec", "--", "sh", "-c", load)...)
		r.recs = f.until(t, 10*time.Minute, done, func(l logLine) bool { return l.Text == done })
		took := time.Since(start)
		t.Logf("%s: %d lines followed in %.1f s (%.0f lines/s, from insmod over SSH to the last line)", r.label, r.lines, took.Seconds(), float64(r.lines)/took.Seconds())
	}

	rss, err := peakRSS(f.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	f.stop(t)
	if f.err != nil {
		t.Errorf("logs -f ended by SIGINT: %v, want exit 0", f.err)
	}
	lost := parseLost(f.stderr.String())
	t.Logf("logs -f: peak RSS %.1f MiB; lost-record notices: %v", float64(rss)/(1<<20), lost)
	if rss > followRSSLimit {
		t.Errorf("logs -f peak RSS %d MiB, limit %d MiB", rss>>20, followRSSLimit>>20)
	}
	for _, r := range runs {
		got, problems := checkSpam(r.recs, r.marker, lost, r.lines)
		t.Logf("%s: %d of %d lines arrived, %d reported lost", r.label, got, r.lines, r.lines-got)
		for _, p := range problems {
			t.Errorf("%s: %s", r.label, p)
		}
		if r.label == "burst" && got == r.lines {
			t.Errorf("burst: every line arrived, so the overwritten-records path was not exercised")
		}
	}

	// The guest's reader ends with the follow: no cat is left reading /dev/kmsg.
	deadline := time.Now().Add(time.Minute)
	for {
		out := mustCLI(t, ctx, append(n, "exec", "--", "sh", "-c", "pgrep -x cat || true")...)
		if strings.TrimSpace(out) == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("a cat is still running in the guest a minute after logs -f ended: %s", out)
			break
		}
		time.Sleep(time.Second)
	}
	mustCLI(t, ctx, append(n, "exec", "--", "rmmod", "spam")...)
}

// TestCheckSpam: the e2e accounting of a spam run catches every way a follow can go wrong.
func TestCheckSpam(t *testing.T) {
	rec := func(seq uint64, text string) logLine { return logLine{Seq: seq, Text: text, Source: "kmsg"} }
	line := func(seq uint64, i int) logLine { return rec(seq, fmt.Sprintf("spam: line %d/3", i)) }
	done := func(seq uint64) logLine { return rec(seq, "spam: done 3") }
	tests := []struct {
		name    string
		recs    []logLine
		lost    []lostRange
		wantGot int
		problem string // "" if the run is fully accounted for
	}{
		{"all arrived", []logLine{line(11, 1), line(12, 2), line(13, 3), done(14)}, nil, 3, ""},
		{"others in between", []logLine{line(11, 1), rec(12, "virtio: hello"), line(13, 2), line(14, 3), done(15)}, nil, 3, ""},
		{"loss reported", []logLine{line(11, 1), line(14, 3), done(15)}, []lostRange{{12, 2}}, 2, ""},
		{"first and last lost", []logLine{line(12, 2), done(14)}, []lostRange{{11, 1}, {13, 1}}, 1, ""},
		{"loss of another run is no concern", []logLine{line(11, 1), line(12, 2), line(13, 3), done(14)}, []lostRange{{3, 4}}, 3, ""},
		{"gap not reported", []logLine{line(11, 1), line(14, 3), done(15)}, nil, 2, "not reported lost"},
		{"gap reported with the wrong size", []logLine{line(11, 1), line(14, 3), done(15)}, []lostRange{{12, 1}}, 2, "not reported lost"},
		{"loss reported without a gap", []logLine{line(11, 1), line(12, 2), line(13, 3), done(14)}, []lostRange{{12, 1}}, 3, "no gap"},
		{"line missing without a gap", []logLine{line(11, 1), line(12, 3), done(13)}, nil, 2, "lines 2-2 missing"},
		{"lines out of order", []logLine{line(11, 2), line(12, 1), line(13, 3), done(14)}, []lostRange{}, 2, "line 1 after line 2"},
		{"records out of order", []logLine{line(11, 1), line(13, 3), line(12, 2), done(14)}, []lostRange{{12, 1}}, 2, "out of order"},
		{"more lines missing than lost", []logLine{line(12, 3), done(13)}, []lostRange{{11, 1}}, 1, "lines 1-2 missing, but only 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := checkSpam(tt.recs, 10, tt.lost, 3)
			if got != tt.wantGot {
				t.Errorf("got %d lines, want %d", got, tt.wantGot)
			}
			all := strings.Join(problems, "; ")
			if tt.problem == "" && len(problems) > 0 || tt.problem != "" && !strings.Contains(all, tt.problem) {
				t.Errorf("problems %q, want one with %q", all, tt.problem)
			}
		})
	}
}
