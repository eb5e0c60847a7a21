// Package kmsg parses Linux kernel log records (/dev/kmsg, console and dmesg
// formats) and judges what a module load produced: oopses, BUGs, WARNINGs,
// Rust panics, sanitizer reports, lockups, stalls and new taint flags.
package kmsg

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Record is one kernel log record.
type Record struct {
	Seq      uint64        // /dev/kmsg sequence number; 0 when the format has none
	Level    int           // 0 (emerg) .. 7 (debug); -1 when the format does not say
	Facility int           // syslog facility; 0 is the kernel
	TS       time.Duration // time since boot
	Text     string        // message text; may hold '\n' for multi-line /dev/kmsg records
}

var levelNames = [...]string{"emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"}

// LevelName returns the kernel's short name of a log level ("warn"), or
// "unknown" for a level outside 0..7.
func LevelName(level int) string {
	if level < 0 || level >= len(levelNames) {
		return "unknown"
	}
	return levelNames[level]
}

// ParseLevel parses a log level given by name ("warn", "warning", "err",
// "error", …) or by number (0..7).
func ParseLevel(name string) (int, error) {
	s := strings.ToLower(strings.TrimSpace(name))
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n < len(levelNames) {
		return n, nil
	}
	switch s {
	case "warning":
		return 4, nil
	case "error":
		return 3, nil
	case "emergency", "panic":
		return 0, nil
	case "critical":
		return 2, nil
	}
	for i, n := range levelNames {
		if s == n {
			return i, nil
		}
	}
	return 0, fmt.Errorf("unknown kernel log level %q: use one of %s, or a number from 0 (emerg) to 7 (debug); "+
		"hint: warn shows warnings and everything more severe",
		name, strings.Join(levelNames[:], ", "))
}

// ParseKmsgLine parses one line read from /dev/kmsg:
//
//	6,1234,5678901,-;message text
//	6,1234,5678901,-,caller=T95;message text
//
// Dictionary continuation lines (" SUBSYSTEM=…") and malformed lines return
// false. Escaped bytes (\xNN) in the text are decoded, so a multi-line record
// comes back with '\n' in its Text.
func ParseKmsgLine(line string) (Record, bool) {
	line = strings.TrimRight(line, "\r\n")
	if line == "" || line[0] == ' ' {
		return Record{}, false
	}
	prefix, text, ok := strings.Cut(line, ";")
	if !ok {
		return Record{}, false
	}
	fields := strings.Split(prefix, ",")
	if len(fields) < 3 {
		return Record{}, false
	}
	prio, err := strconv.ParseUint(fields[0], 10, 16)
	if err != nil {
		return Record{}, false
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return Record{}, false
	}
	usec, err := strconv.ParseUint(fields[2], 10, 63)
	if err != nil || usec > uint64(1<<63-1)/1000 {
		return Record{}, false
	}
	return Record{
		Seq:      seq,
		Level:    int(prio & 7),
		Facility: int(prio >> 3),
		TS:       time.Duration(usec) * time.Microsecond,
		Text:     unescapeKmsg(text),
	}, true
}

// unescapeKmsg decodes the \xNN escapes /dev/kmsg uses for non-printable
// bytes and for the backslash itself.
func unescapeKmsg(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return strings.TrimRight(b.String(), "\n")
}

var syslogLevels = map[string]int{
	"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warn": 4, "notice": 5, "info": 6, "debug": 7,
}

var syslogFacilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19,
	"local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// ParseConsoleLine parses one line of a serial console log or of dmesg output:
//
//	[    1.234567] message
//	[    1.234567][   T95] message        (CONFIG_PRINTK_CALLER)
//	<4>[    1.234567] message            (dmesg -r)
//	kern  :warn  : [    1.234567] message (dmesg -x)
//
// Seq is 0 and Level is -1 unless the line carries a level. It returns false
// when the line has no kernel prefix; the Record then still holds the line as
// Text (Level -1), for callers that want to keep it.
func ParseConsoleLine(line string) (Record, bool) {
	line = strings.TrimRight(line, "\r\n")
	r := Record{Level: -1}
	rest := line
	known := false

	// dmesg -x: "kern  :warn  : "
	if fac, after, ok := strings.Cut(rest, ":"); ok && len(fac) <= 10 {
		if f, ok := syslogFacilities[strings.TrimSpace(fac)]; ok {
			if lvl, after2, ok := strings.Cut(after, ":"); ok {
				if l, ok := syslogLevels[strings.TrimSpace(lvl)]; ok {
					r.Facility, r.Level, known = f, l, true
					rest = strings.TrimPrefix(after2, " ")
				}
			}
		}
	}
	// dmesg -r / syslog: "<4>"
	if !known && len(rest) > 2 && rest[0] == '<' {
		if end := strings.IndexByte(rest, '>'); end > 1 && end <= 5 {
			if p, err := strconv.ParseUint(rest[1:end], 10, 16); err == nil {
				r.Level, r.Facility, known = int(p&7), int(p>>3), true
				rest = rest[end+1:]
			}
		}
	}
	// "[    1.234567]"
	if ts, after, ok := bracket(rest); ok {
		if d, ok := parseSeconds(ts); ok {
			r.TS, rest, known = d, after, true
		}
	}
	// "[   T95]" or "[    C1]"
	if id, after, ok := bracket(rest); ok && isCallerID(id) {
		rest, known = after, true
	}
	if !known {
		return Record{Level: -1, Text: line}, false
	}
	r.Text = strings.TrimPrefix(rest, " ")
	return r, true
}

// bracket splits "[ inner ]rest" into its trimmed inner part and rest.
func bracket(s string) (inner, rest string, ok bool) {
	if len(s) < 2 || s[0] != '[' {
		return "", s, false
	}
	end := strings.IndexByte(s, ']')
	if end < 0 || end > 32 {
		return "", s, false
	}
	return strings.TrimSpace(s[1:end]), s[end+1:], true
}

func parseSeconds(s string) (time.Duration, bool) {
	sec, frac, ok := strings.Cut(s, ".")
	if !ok || sec == "" || frac == "" || len(frac) > 9 || len(sec) > 9 {
		return 0, false
	}
	secs, err := strconv.ParseUint(sec, 10, 64)
	if err != nil {
		return 0, false
	}
	f, err := strconv.ParseUint(frac, 10, 64)
	if err != nil {
		return 0, false
	}
	for i := len(frac); i < 9; i++ {
		f *= 10
	}
	return time.Duration(secs)*time.Second + time.Duration(f), true
}

func isCallerID(s string) bool {
	if len(s) < 2 || (s[0] != 'T' && s[0] != 'C') {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// ParseLog parses a whole log: /dev/kmsg lines, console lines or dmesg
// output, mixed freely. Dictionary continuation lines and lines without a
// kernel prefix (a login prompt on the serial console, say) are dropped; if
// no line at all has a kernel prefix, every non-empty line is kept as a
// record with Level -1, so a log printed with printk.time=0 still classifies.
func ParseLog(text string) []Record {
	var recs, raw []Record
	for line := range strings.Lines(text) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			continue
		}
		if r, ok := ParseKmsgLine(line); ok {
			recs = append(recs, r)
			continue
		}
		r, ok := ParseConsoleLine(line)
		if ok {
			recs = append(recs, r)
		} else if len(recs) == 0 {
			raw = append(raw, r)
		}
	}
	if len(recs) == 0 {
		return raw
	}
	return recs
}

// Format renders the record as one readable line, like the console prints
// it: "[    1.234567] <warn> text". Each line of a multi-line record gets the
// prefix.
func (r Record) Format(withLevel bool) string {
	us := r.TS / time.Microsecond
	prefix := fmt.Sprintf("[%5d.%06d] ", us/1e6, us%1e6)
	if withLevel && r.Level >= 0 {
		prefix += "<" + LevelName(r.Level) + "> "
	}
	if !strings.Contains(r.Text, "\n") {
		return prefix + r.Text
	}
	lines := strings.Split(r.Text, "\n")
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return strings.Join(lines, "\n")
}
