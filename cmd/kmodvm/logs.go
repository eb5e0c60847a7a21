package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kmodvm/kmodvm/provision/guestlog"
	"github.com/kmodvm/kmodvm/provision/kernel"
	"github.com/kmodvm/kmodvm/provision/kmsg"
	"github.com/kmodvm/kmodvm/provision/ktrace"
	"github.com/kmodvm/kmodvm/provision/module"
	"github.com/kmodvm/kmodvm/provision/rustsym"
	"github.com/kmodvm/kmodvm/provision/sandbox"
)

// logFilter selects kernel log records for `kmodvm logs`.
type logFilter struct {
	maxLevel int    // records at this level or more urgent (lower number); -1 = all
	module   string // records that mention the module
}

// newLogFilter is the filter of --level and --module ("" for either: no filter).
func newLogFilter(level, mod string) (logFilter, error) {
	f := logFilter{maxLevel: -1, module: mod}
	if level != "" {
		l, err := kmsg.ParseLevel(level)
		if err != nil {
			return logFilter{}, withCode(exitUsage, err)
		}
		f.maxLevel = l
	}
	return f, nil
}

func (f logFilter) keep(r kmsg.Record) bool {
	if f.maxLevel >= 0 && r.Level >= 0 && r.Level > f.maxLevel {
		return false
	}
	if f.module != "" && !mentionsModule(r.Text, f.module) {
		return false
	}
	return true
}

// mentionsModule: pr_* in a module prints "name: ...", traces show "[name]". The kernel
// spells module names with _ (KBUILD_MODNAME), file names often use -: either spelling of
// name matches either spelling in the text.
func mentionsModule(text, name string) bool {
	for _, n := range []string{strings.ReplaceAll(name, "-", "_"), strings.ReplaceAll(name, "_", "-")} {
		if strings.HasPrefix(text, n+":") || strings.Contains(text, "["+n+"]") || strings.Contains(text, " "+n+":") {
			return true
		}
	}
	return false
}

// logLine is `logs --json`, one object per line; each carries the schema, so a reader that
// starts anywhere in the stream (a follower's tail) knows what it reads.
type logLine struct {
	Schema string  `json:"schema"`
	Seq    uint64  `json:"seq,omitempty"`
	Time   float64 `json:"time"`
	Level  string  `json:"level,omitempty"`
	Text   string  `json:"text"`
	Source string  `json:"source"` // kmsg, console, or trace: Trace decodes the records before
	// Trace is a crash report of the records before this line, decoded (frames with
	// file:line); its seq and time are the report's first record's, its text the title.
	Trace *ktrace.Trace `json:"trace,omitempty"`
}

// logsConnectTimeout bounds the wait for the guest's SSH before logs reads the console log.
const logsConnectTimeout = 10 * time.Second

func (a *app) logsCmd() *cobra.Command {
	var (
		follow bool
		level  string
		mod    string
	)
	c := &cobra.Command{
		Use:   "logs",
		Short: "Print (or follow with -f) the guest's kernel log",
		Long: `Print the guest's kernel log from /dev/kmsg over SSH, with readable timestamps and
levels, Rust symbols demangled and source paths pointed at the host's files. When SSH is down (the guest crashed or is booting) it reads the serial console
log instead, and says so. When the kernel logs faster than -f can carry the records, the
guest overwrites some before they are read: -f says how many on stderr and carries on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			f, err := newLogFilter(level, mod)
			if err != nil {
				return err
			}
			emit := a.logEmitter(f)
			return a.readLogs(ctx, follow, emit, func(s string) { fmt.Fprintf(a.stderr, "==> %s\n", s) }, a.traceEmitter(f))
		},
	}
	fl := c.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new records")
	fl.StringVar(&level, "level", "", "only records at this level or more urgent (emerg, alert, crit, err, warn, notice, info, debug)")
	fl.StringVar(&mod, "module", "", "only records that mention this module")
	fl.BoolVar(&a.jsonOut, "json", false, "one JSON object per record")
	return c
}

// readLogs passes the guest's kernel log records to emit, from /dev/kmsg over SSH, else
// (SSH down: the guest crashed or is booting) from the console log; say tells why the
// records come from where they do, and how many the guest overwrote before they were read.
// traces, when not nil, gets each crash report of the log decoded (traceDecoder), after its
// last record. `logs` and the logs tool of `kmodvm mcp`.
func (a *app) readLogs(ctx context.Context, follow bool, emit func(kmsg.Record, string), say func(string), traces func(ktrace.Trace, kmsg.Record)) error {
	return a.withSandbox(ctx, func(sb *sandbox.Sandbox) error {
		in, err := sb.Instance(a.vmName())
		if err != nil {
			return err
		}
		m := a.logMapper(in)
		emit := readableRecords(m, emit)
		if traces != nil {
			dec := a.newTraceDecoder(in, m, traces, say)
			readable := emit
			emit = func(r kmsg.Record, source string) {
				readable(r, source)
				dec.add(ctx, r)
			}
			defer func() {
				if !follow {
					dec.flush(ctx) // a report the log ends in (a hung task, a guest that died)
				}
			}()
		}
		// A hung guest keeps its SSH port open without answering: when the console log
		// can tell the story, do not wait as long as other commands do.
		gctx, cancel := context.WithTimeout(ctx, logsConnectTimeout)
		g, err := sb.Guest(gctx, a.vmName())
		cancel()
		if err != nil {
			say(fmt.Sprintf("SSH to %s is not available (%v); reading the console log %s instead", in.Name, firstLine(err.Error()), in.ConsoleLog()))
			return followConsole(ctx, in.ConsoleLog(), follow, emit)
		}
		defer g.Close()
		code, err := guestlog.Read(ctx, g.SSH(), guestlog.Device, follow, func(r kmsg.Record) { emit(r, "kmsg") }, func(from, n uint64) {
			say(fmt.Sprintf("lost %d kernel log records (seq %d-%d): the guest overwrote them before kmodvm could read them", n, from, from+n-1))
		})
		if ctx.Err() != nil {
			return nil // Ctrl-C ends a follow
		}
		if errors.Is(err, bufio.ErrTooLong) {
			return err
		}
		if err != nil && follow {
			say(fmt.Sprintf("lost SSH to the guest (%v); following the console log %s", firstLine(err.Error()), in.ConsoleLog()))
			return followConsole(ctx, in.ConsoleLog(), true, emit)
		}
		if err == nil && follow {
			return fmt.Errorf("the kernel log reader in the guest ended by itself (status %d); hint: `kmodvm logs -f` starts it again", code)
		}
		return err
	})
}

// readableRecords returns emit with each record's Rust symbols demangled and the source
// paths it names pointed at the files on the host, where they are there.
func readableRecords(m ktrace.Mapper, emit func(kmsg.Record, string)) func(kmsg.Record, string) {
	return func(r kmsg.Record, source string) {
		r.Text = m.MapText(rustsym.DemangleText(r.Text))
		emit(r, source)
	}
}

// kernelMapper points the paths into the kernel's tree and the toolchain root that the VM's
// kernel and the compilers print at the host: its staged build tree (a kernel cache entry's
// KDir), then the sources that entry keeps beside it and the tree it was built in; the root's
// /usr.
func (a *app) kernelMapper(in *sandbox.Instance) ktrace.Mapper {
	m := ktrace.Mapper{GuestKernelDir: kernel.GuestTree, KernelSrc: in.KDir, ToolchainRoot: in.RootDir}
	k, err := kernel.Open(filepath.Dir(in.KDir))
	if err != nil {
		a.log.Debug("the kernel's sources will not be mapped to the host", "kdir", in.KDir, "err", err)
		return m
	}
	m.KernelExtra = k.SourceDirs()
	return m
}

// logMapper points the paths the guest's kernel prints at the host: the kernel's files (see
// kernelMapper), those of the modules kmodvm built for the VM on the host (by their absolute
// paths), and the files of kmodvm.yaml's module (module.dir), if it names one.
func (a *app) logMapper(in *sandbox.Instance) ktrace.Mapper {
	m := a.kernelMapper(in)
	m.Modules = map[string]string{}
	for _, b := range module.HostBuilds(in.HostBuildsDir()) {
		m.Modules[b.Remote] = b.Source
	}
	if a.cfg.Module.Dir == "" {
		return m
	}
	if src, err := module.Detect(a.cfg.Module.Dir); err == nil {
		m.GuestModuleDir, m.HostModuleDir = module.RemoteDir(src.Dir), src.Dir
	}
	return m
}

// newLogLine is a record as `logs --json` prints it.
func newLogLine(r kmsg.Record, source string) logLine {
	l := logLine{Schema: schemaLogs, Seq: r.Seq, Time: r.TS.Seconds(), Text: r.Text, Source: source}
	if r.Level >= 0 {
		l.Level = kmsg.LevelName(r.Level)
	}
	return l
}

// traceEmitter prints a decoded crash report after the records it was decoded from: for
// people, the report as run prints it; with --json, a line with source "trace". --module
// keeps the reports that mention the module.
func (a *app) traceEmitter(f logFilter) func(ktrace.Trace, kmsg.Record) {
	return func(t ktrace.Trace, first kmsg.Record) {
		text := ktrace.Format(t)
		if f.module != "" && !mentionsModule(text, f.module) && !slices.Contains(t.Modules, f.module) {
			return
		}
		if a.jsonOut {
			l := newLogLine(first, "trace")
			l.Text, l.Trace = t.Title, &t
			_ = json.NewEncoder(a.stdout).Encode(l)
			return
		}
		fmt.Fprintf(a.stdout, "decoded: %s", strings.ReplaceAll(strings.TrimSuffix(text, "\n"), "\n", "\n    ")+"\n")
	}
}

func (a *app) logEmitter(f logFilter) func(kmsg.Record, string) {
	enc := json.NewEncoder(a.stdout)
	w := bufio.NewWriter(a.stdout)
	return func(r kmsg.Record, source string) {
		if !f.keep(r) {
			return
		}
		if a.jsonOut {
			_ = enc.Encode(newLogLine(r, source))
			return
		}
		fmt.Fprintln(w, r.Format(true))
		w.Flush()
	}
}

// maxPartialLine bounds the unfinished last line followConsole keeps between reads (kernel
// records are about 1 KiB).
const maxPartialLine = 64 * 1024

// followConsole prints the console log's kernel lines; with follow it keeps reading as the
// file grows (and starts over if it is truncated).
func followConsole(ctx context.Context, path string, follow bool, emit func(kmsg.Record, string)) error {
	f, err := os.Open(path)
	if err != nil {
		if why := sandbox.ConsoleUnreadable(path); why != "" && errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("read console log: %s", why)
		}
		return fmt.Errorf("read console log: %w", err)
	}
	defer func() { f.Close() }()
	rd := bufio.NewReader(f)
	var partial string
	emitLine := func(line string) {
		if r, ok := kmsg.ParseConsoleLine(strings.TrimRight(line, "\r\n")); ok {
			emit(r, "console")
		}
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		line, err := rd.ReadString('\n')
		if err == nil {
			emitLine(partial + line)
			partial = ""
			continue
		}
		if len(partial) < maxPartialLine { // a line that never ends must not grow without bound
			partial += line
		}
		if !follow {
			if partial != "" {
				emitLine(partial) // the last line of a crashed guest's log may lack its newline
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// At EOF the reader holds nothing, so the file offset is what was read. A file now
		// shorter than that was truncated; a different file at path replaced it.
		if st, err := os.Stat(path); err == nil {
			cur, cerr := f.Stat()
			off, oerr := f.Seek(0, io.SeekCurrent)
			if cerr == nil && oerr == nil && (!os.SameFile(st, cur) || st.Size() < off) {
				if nf, err := os.Open(path); err == nil {
					f.Close()
					f = nf
					rd.Reset(f)
					partial = ""
				}
			}
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
