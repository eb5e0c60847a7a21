package module

import (
	"bufio"
	_ "embed"
	"strconv"
	"strings"

	"github.com/kmodvm/kmodvm/provision/guestlog"
	"github.com/kmodvm/kmodvm/provision/kmsg"
)

// guestScript is everything the runner does in the guest (guest.sh documents its commands
// and the step protocol parseStep reads).
//
//go:embed guest.sh
var guestScript string

// guestFiles are the guest files guest.sh uses, and where the module dirs go. Tests point
// them into a temporary directory.
type guestFiles struct {
	Root    string // prefix of the module dirs (RemoteDir); "" in a guest
	Kmsg    string // the kernel log
	Tainted string // the taint flags
	Modules string // the loaded modules
	Job     string // the process group of the running build or step
	KUnit   string // KUnit's debugfs dir: a dir per registered suite
	Filter  string // KUnit's filter_glob parameter
	SysRq   string // the magic SysRq trigger
}

// jobFile holds the process group of the long command the runner has running in the guest
// (a build, a load or unload step), so that abandon can stop it.
const jobFile = "/run/kmodvm.job"

var realGuestFiles = guestFiles{
	Kmsg:    guestlog.Device,
	Tainted: "/proc/sys/kernel/tainted",
	Modules: "/proc/modules",
	Job:     jobFile,
	KUnit:   "/sys/kernel/debug/kunit",
	Filter:  "/sys/module/kunit/parameters/filter_glob",
	SysRq:   "/proc/sysrq-trigger",
}

// guestCommand is the command line that runs guest.sh with args (a command and its
// arguments) in the guest.
func (f guestFiles) guestCommand(args ...string) string {
	return guestlog.Command(map[string]string{ // (not Root: the runner adds it to the paths)
		"KMSG": f.Kmsg, "TAINTED": f.Tainted, "MODULES": f.Modules, "JOB": f.Job,
		"KUNIT": f.KUnit, "KUNIT_FILTER": f.Filter, "SYSRQ": f.SysRq,
	}, guestScript, "kmodvm-guest", args...)
}

// stepOutput is what a load or unload step printed.
type stepOutput struct {
	taint, taint2 kmsg.Taint
	rc            int
	errText       []string
	records       []kmsg.Record // the kernel log records since the cursor
	lost          int           // records after the cursor overwritten before they were read
	last          logCursor     // the last record read
	complete      bool
	stale         bool     // a module of that name was loaded and was unloaded first
	staleFail     string   // ... and could not be unloaded: rmmod's reason
	suites        []string // the KUnit suites the load registered
	kunitOff      bool     // the kernel has no KUnit
}

// parseStep reads the output of guest.sh load or unload (the step protocol in guest.sh). The
// step's records are those after prev, the last record the previous step read, or without
// one, those after the command started. The records come from one open /dev/kmsg, in order:
// a gap in their numbers, also one between prev and the first record after it, is what the
// guest overwrote before the step read it.
func parseStep(out string, prev logCursor) stepOutput {
	so := stepOutput{rc: -1}
	var before, after []kmsg.Record
	var staleFail []string
	running, taints := false, 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		l := sc.Text()
		key, val, _ := strings.Cut(l, " ")
		switch key {
		case "kmodvm-taint":
			t, _ := kmsg.ParseTaint(val)
			if taints == 0 {
				so.taint = t
			} else {
				so.taint2 = t
			}
			taints++
		case "kmodvm-stale":
			so.stale = true
		case "kmodvm-stale-failed":
			staleFail = append(staleFail, strings.TrimSpace(val))
		case "kmodvm-run":
			running = true
		case "kmodvm-rc":
			so.rc, _ = strconv.Atoi(strings.TrimSpace(val))
		case "kmodvm-err":
			if t := strings.TrimSpace(val); t != "" {
				so.errText = append(so.errText, t)
			}
		case "kmodvm-suite":
			so.suites = append(so.suites, strings.TrimSpace(val))
		case "kmodvm-kunit-off":
			so.kunitOff = true
		case "kmodvm-end":
			so.complete = true
		default:
			rec, ok := kmsg.ParseKmsgLine(l)
			switch {
			case !ok:
			case running:
				after = append(after, rec)
			default:
				before = append(before, rec)
			}
		}
	}
	so.staleFail = strings.Join(staleFail, "; ")

	// Where the step's records start: after prev, unless prev is from before a guest restart
	// (newer than anything read now), else after the command started.
	var s guestlog.Scanner
	recs := after
	newestBefore := logCursor{}
	if len(before) > 0 {
		newestBefore = logCursor{before[len(before)-1].Seq, true}
	}
	switch {
	case prev.ok && (!newestBefore.ok || prev.seq <= newestBefore.seq):
		s = guestlog.Scanner{Next: prev.seq + 1, Started: true}
		recs = append(before, after...)
		so.last = prev
	case newestBefore.ok:
		s = guestlog.Scanner{Next: newestBefore.seq + 1, Started: true}
		so.last = newestBefore
	}
	for _, rec := range recs {
		if s.Started && rec.Seq < s.Next {
			continue // read before, or the cursor itself
		}
		_, n := s.Record(rec)
		so.lost += int(n)
		so.records = append(so.records, rec)
		so.last = logCursor{rec.Seq, true}
	}
	return so
}
