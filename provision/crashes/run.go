package crashes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/module"
)

// crashClasses are the findings that mean the kernel crashed (or a task in it died or hung),
// as opposed to a warning, a sanitizer report or a taint the kernel lived through.
var crashClasses = []kmsg.Class{
	kmsg.ClassOops, kmsg.ClassGPF, kmsg.ClassBug, kmsg.ClassPanic, kmsg.ClassRustPanic, kmsg.ClassHungTask,
}

// CrashStep returns the first step of a run that crashed: the guest died or hung during it,
// or the kernel reported an oops, BUG, general protection fault, panic, Rust panic or hung
// task. ok is false when nothing crashed: no bundle is kept.
func CrashStep(res *module.Result) (st module.Step, class string, ok bool) {
	for _, s := range res.Steps {
		for _, f := range s.Findings {
			if slices.Contains(crashClasses, f.Class) {
				return s, string(f.Class), true
			}
		}
		if s.Crashed {
			class := ""
			if len(s.Findings) > 0 {
				class = string(s.Findings[0].Class)
			}
			return s, class, true
		}
	}
	return module.Step{}, "", false
}

// StepName is how a bundle names a step: "load rust_oops (#1)", "kunit-run suite (#1)".
func StepName(s module.Step) string {
	what := s.Module
	if s.Suite != "" {
		what = s.Suite
	}
	return fmt.Sprintf("%s %s (#%d)", s.Action, what, s.Iteration)
}

// KmsgLines is kmsg.txt: each step's kernel log under a header naming the step.
func KmsgLines(steps []module.Step) []string {
	var out []string
	for _, s := range steps {
		h := "# " + StepName(s)
		if s.Crashed {
			h += ": the guest died or hung (" + s.Error + "); read from the console log"
		}
		out = append(out, h)
		out = append(out, s.Log...)
	}
	return out
}

// LogRecords turns the steps' formatted log lines (Step.Log: "[   12.345678] <warn> text")
// back into kernel log records, for ktrace.Parse.
func LogRecords(steps []module.Step) []kmsg.Record {
	var recs []kmsg.Record
	for _, s := range steps {
		for _, l := range s.Log {
			r, ok := kmsg.ParseConsoleLine(l)
			if !ok {
				continue
			}
			if lvl, rest, ok := strings.Cut(r.Text, "> "); ok && strings.HasPrefix(lvl, "<") {
				if n, err := kmsg.ParseLevel(lvl[1:]); err == nil {
					r.Level, r.Text = n, rest
				}
			}
			recs = append(recs, r)
		}
	}
	return recs
}

// MaxConsole is how much of the console log a bundle keeps: the last 4 MiB the run wrote.
const MaxConsole = 4 << 20

// ConsoleMark is where the console log stood when a run started.
type ConsoleMark struct {
	Size int64
	file os.FileInfo // nil when there was no log
}

// MarkConsole notes where the console log at path stands.
func MarkConsole(path string) ConsoleMark {
	fi, err := os.Stat(path)
	if err != nil {
		return ConsoleMark{}
	}
	return ConsoleMark{Size: fi.Size(), file: fi}
}

// ConsoleSince reads what the run wrote to the console log at path since mark, the last max
// bytes of it (truncated says so). When the log is another file than at the mark, the guest
// was restarted and its old log moved aside to path.1 (see sandbox's prepareConsoleLog): the
// rest of that one comes first. A log that does not exist yields nothing.
func ConsoleSince(path string, mark ConsoleMark, max int) (data []byte, truncated bool, err error) {
	var buf bytes.Buffer
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("read the console log: %w", err)
	}
	start := mark.Size
	if mark.file != nil && !os.SameFile(mark.file, fi) || fi.Size() < mark.Size {
		if old, err := os.Stat(path + ".1"); err == nil && (mark.file == nil || os.SameFile(mark.file, old)) {
			if err := readFrom(&buf, path+".1", mark.Size); err != nil {
				return nil, false, fmt.Errorf("read the console log: %w", err)
			}
		}
		start = 0
	}
	if err := readFrom(&buf, path, start); err != nil {
		return nil, false, fmt.Errorf("read the console log: %w", err)
	}
	data = buf.Bytes()
	if len(data) > max {
		data = data[len(data)-max:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 && i < len(data)-1 {
			data = data[i+1:] // start at a whole line
		}
		truncated = true
	}
	return data, truncated, nil
}

func readFrom(w io.Writer, path string, off int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}

// LoadedKos returns the .ko files in a host build directory that the run loaded: regular
// files whose module name (dashes read as underscores, as the kernel does) a load step names.
func LoadedKos(buildDir string, steps []module.Step) ([]string, error) {
	loaded := map[string]bool{}
	for _, s := range steps {
		if s.Action == "load" {
			loaded[s.Module] = true
		}
	}
	ents, err := os.ReadDir(buildDir)
	if err != nil {
		return nil, fmt.Errorf("list the host build's .ko files: %w", err)
	}
	var kos []string
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".ko")
		if !ok || !e.Type().IsRegular() || !loaded[strings.ReplaceAll(name, "-", "_")] {
			continue
		}
		kos = append(kos, filepath.Join(buildDir, e.Name()))
	}
	return kos, nil
}

// SourceRevision is `git describe --always --dirty` of dir, "" when dir is not in a git work
// tree or git is missing or slow: the revision is a help, never a failure. The repository's
// fsmonitor hook is switched off: kmodvm runs no program a module's repository names.
func SourceRevision(ctx context.Context, dir string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", "-c", "core.fsmonitor=false", "-C", dir, "describe", "--always", "--dirty")
	cmd.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0")
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
