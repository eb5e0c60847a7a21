// Package config loads and validates kmodvm.yaml, the per-project settings file.
//
// Loading is strict: unknown keys, duplicate keys, values of the wrong type and values out of
// range are errors that name the file and line, in one paragraph each, without Go type names.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole of kmodvm.yaml.
type Config struct {
	Name   string `yaml:"name"`
	VM     VM     `yaml:"vm"`
	Image  Image  `yaml:"image"`
	Kernel Kernel `yaml:"kernel"`
	Module Module `yaml:"module"`

	// Path is the file the config came from, "" if none.
	Path string `yaml:"-"`
	// Dir is the absolute directory relative paths in the file resolve against.
	Dir string `yaml:"-"`
}

// VM is the "vm" section: the sandbox guest's size and how libvirt runs it.
type VM struct {
	Memory int    `yaml:"memory"` // MiB
	CPUs   int    `yaml:"cpus"`
	Accel  string `yaml:"accel"` // AccelAuto, AccelKVM or AccelTCG
	Port   int    `yaml:"port"`  // host SSH port on 127.0.0.1; 0 = pick a free one
	URI    string `yaml:"uri"`   // libvirt connection URI
	// CrashRetention is how many crash bundles the VM keeps (the newest); 0 keeps none.
	CrashRetention int `yaml:"crash_retention"`
}

// Image is the "image" section: the Debian root the guest and the toolchain run in.
type Image struct {
	Suite  string `yaml:"suite"`
	Mirror string `yaml:"mirror"`
	// SnapshotMirror says Mirror is a frozen snapshot, whose Release files apt accepts after
	// they expire. Load defaults it to true for DefaultMirror (a snapshot) and to false for a
	// mirror the file names without saying.
	SnapshotMirror bool     `yaml:"snapshot_mirror"`
	Packages       []string `yaml:"packages"`
	Init           string   `yaml:"init"` // InitTiny or InitSystemd
}

// Kernel is the "kernel" section: which kernel to build and how to configure it.
type Kernel struct {
	// Source is SourcePackageName, a kernel tree directory, or a tarball path or http(s) URL
	// (see SourceKind; a directory named "package" is written "./package"). Load makes a
	// relative path absolute.
	Source string `yaml:"source"`
	// SHA256 is the tarball's digest, lower-cased by Load; set only when Source is a tarball.
	SHA256 string `yaml:"sha256"`
	Base   string `yaml:"base"` // BaseSmall or BaseDefconfig
	// Fragments are config lines, in-tree fragment names or fragment files (see ClassifyFragment).
	// Load makes relative file paths absolute.
	Fragments []string `yaml:"fragments"`
	// Patches are patch files (git format-patch, mbox series, diff -u) applied in order to
	// the kernel sources of this kernel only (kernel.Request.Patches). Load makes relative
	// paths absolute.
	Patches []string `yaml:"patches"`
	// Bindings are headers ("linux/iio/iio.h") bindgen binds for the kernel crate of this
	// kernel (kernel.Request.Bindings).
	Bindings []string `yaml:"bindings"`
	Jobs     int      `yaml:"jobs"` // make -j; 0 = number of CPUs
	// Debug selects the debug kernel variant: DWARF line tables, the ORC unwinder, and
	// vmlinux kept for symbolizing traces (kernel.ConfigSpec.Debug). Unset means on: a
	// crash trace that names the module's source line is what kmodvm is for; false trades
	// that for a smaller, faster first build. Read it with DebugOn.
	Debug *bool `yaml:"debug"`
}

// DebugOn says whether the kernel is the debug variant: kernel.debug, true when unset.
func (k Kernel) DebugOn() bool { return k.Debug == nil || *k.Debug }

// Module is the "module" section: the module under development and how it is run.
type Module struct {
	Dir     string        `yaml:"dir"`    // absolute after Load
	Params  []string      `yaml:"params"` // "name=value"
	Build   string        `yaml:"build"`  // BuildAuto, BuildGuest or BuildHost
	Timeout time.Duration `yaml:"timeout"`
}

// Error is one problem with the content of a config file. Load returns a *Error, or several
// joined with errors.Join, for anything wrong with what the file says; the CLI treats those
// as configuration errors.
type Error struct {
	File string // the path as given to Load
	Line int    // 1-based; 0 when the problem has no single line
	Msg  string // one paragraph, without the position
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// LoadDefault loads dir/kmodvm.yaml if it exists; otherwise it returns Default() with Dir set
// to dir (made absolute) and relative paths resolved against it.
func LoadDefault(dir string) (Config, error) {
	path := filepath.Join(dir, FileName)
	c, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return c, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Config{}, fmt.Errorf("resolve directory %q: %w", dir, err)
	}
	c = Default()
	c.Dir = abs
	c.resolve()
	return c, nil
}

// Load reads, checks and validates the config file at path. Keys the file leaves out keep
// their Default() values; relative paths in it are resolved against the file's directory.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config file: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, fmt.Errorf("resolve config path %q: %w", path, err)
	}
	return parse(data, path, abs)
}

// parse decodes data, shown to users as display, from the file at the absolute path abs.
func parse(data []byte, display, abs string) (Config, error) {
	c := Default()
	c.Path = abs
	c.Dir = filepath.Dir(abs)

	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty file, or only comments
			c.resolve()
			return c, nil
		}
		return Config{}, syntaxError(display, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return Config{}, &Error{File: display, Line: extra.Line,
			Msg: fmt.Sprintf("a second YAML document starts here; %s holds one; hint: remove the \"---\" line and merge the documents", filepath.Base(display))}
	} else if !errors.Is(err, io.EOF) {
		return Config{}, syntaxError(display, err)
	}

	w := walker{file: display, lines: map[string]int{}}
	w.walk(&doc, reflect.TypeOf(Config{}), "")
	if len(w.errs) > 0 {
		return Config{}, joinErrors(w.errs)
	}

	// The walk above checked every key and value with positions; the strict decode fills the
	// struct and is a backstop for anything the walk lets through.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&c); err != nil {
		return Config{}, decodeError(display, err)
	}
	c.Path = abs
	c.Dir = filepath.Dir(abs)
	c.Kernel.SHA256 = strings.ToLower(c.Kernel.SHA256)
	if _, said := w.lines["image.snapshot_mirror"]; !said {
		c.Image.SnapshotMirror = strings.TrimRight(c.Image.Mirror, "/") == Default().Image.Mirror
	}
	c.resolve()

	if err := c.Validate(); err != nil {
		var errs []*Error
		for _, e := range flatten(err) {
			var fe *FieldError
			if errors.As(e, &fe) {
				errs = append(errs, &Error{File: display, Line: w.line(fe.Field), Msg: withHint(fe.Error(), fe.Field)})
			} else {
				errs = append(errs, &Error{File: display, Msg: withHint(e.Error(), "")})
			}
		}
		return Config{}, joinErrors(errs)
	}
	return c, nil
}

// resolve makes the relative paths in c absolute against c.Dir and turns empty lists into nil.
func (c *Config) resolve() {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) || c.Dir == "" || strings.HasPrefix(p, "~") {
			return p // "~" is rejected by Validate with a clearer message than a joined path
		}
		return filepath.Join(c.Dir, p)
	}
	c.Module.Dir = abs(c.Module.Dir)
	switch c.Kernel.SourceKind() {
	case SourceTree, SourceTarball:
		c.Kernel.Source = abs(c.Kernel.Source)
	}
	for i, f := range c.Kernel.Fragments {
		if ClassifyFragment(f) == FragmentFile {
			c.Kernel.Fragments[i] = abs(f)
		}
	}
	for i, p := range c.Kernel.Patches {
		c.Kernel.Patches[i] = abs(p)
	}
	for _, l := range []*[]string{&c.Image.Packages, &c.Kernel.Fragments, &c.Kernel.Patches, &c.Kernel.Bindings, &c.Module.Params} {
		if len(*l) == 0 {
			*l = nil
		}
	}
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns a parse error from yaml.v3 into one with the file:line prefix.
func syntaxError(display string, err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = "yaml: " + m[2]
	}
	problem := strings.TrimPrefix(msg, "yaml: ")
	switch {
	case parserProblems[problem]:
		// yaml.v3 reports parser errors with 0-based lines (scanner errors are 1-based) and
		// leaves the line out when it is 0; the +1 points at the construct that is unclosed.
		line++
	case line == 0 && isScannerProblem(problem):
		line = 1 // yaml.v3 leaves out line numbers on the first line
	}
	return &Error{File: display, Line: line,
		Msg: fmt.Sprintf("%s; hint: fix the syntax in %s", msg, filepath.Base(display))}
}

// parserProblems are the messages of yaml.v3's parser (parserc.go), as opposed to its scanner.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// isScannerProblem reports whether msg is one of yaml.v3's scanner messages (scannerc.go),
// which all start like these; its reader's messages (bad UTF-8 and such) do not.
func isScannerProblem(msg string) bool {
	for _, p := range []string{"did not find", "could not find", "found ", "block sequence", "mapping keys", "mapping values"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

var (
	typeErrLine  = regexp.MustCompile(`^line (\d+): (.*)$`)
	cannotDecode = regexp.MustCompile(`^cannot unmarshal !!\w+ (.*) into .*$`)
	notFound     = regexp.MustCompile(`^field (.*) not found in type .*$`)
	alreadySet   = regexp.MustCompile(`^(?:mapping key|field) (.*) already (?:defined|set)(?: in type .*)?( at line \d+)?$`)
	goTypeName   = regexp.MustCompile(` (into|in type) .*$`)
)

// decodeError translates an error from the strict decode, which the walk should have
// prevented, into positions and words without Go type names.
func decodeError(display string, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return syntaxError(display, err)
	}
	var errs []*Error
	for _, s := range te.Errors {
		line := 0
		if m := typeErrLine.FindStringSubmatch(s); m != nil {
			line, _ = strconv.Atoi(m[1])
			s = m[2]
		}
		if m := cannotDecode.FindStringSubmatch(s); m != nil {
			s = fmt.Sprintf("the value %s does not fit this setting", m[1])
		} else if m := notFound.FindStringSubmatch(s); m != nil {
			s = fmt.Sprintf("unknown key %q", m[1])
		} else if m := alreadySet.FindStringSubmatch(s); m != nil {
			s = fmt.Sprintf("key %s is already set%s", m[1], m[2])
		} else {
			s = goTypeName.ReplaceAllString(s, "")
		}
		errs = append(errs, &Error{File: display, Line: line,
			Msg: s + docsHint})
	}
	return joinErrors(errs)
}

// flatten returns the errors joined in err, or err alone.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// maxErrors is how many problems one load reports: a file of 100,000 bad lines must not
// print 100,000 messages.
const maxErrors = 20

func joinErrors(errs []*Error) error {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Line < errs[j].Line })
	if len(errs) == 1 {
		return errs[0]
	}
	if len(errs) > maxErrors {
		more := &Error{File: errs[0].File, Msg: fmt.Sprintf("%d more problems not shown; hint: fix the ones above and load it again", len(errs)-maxErrors)}
		errs = append(errs[:maxErrors:maxErrors], more)
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return errors.Join(out...)
}

var durationType = reflect.TypeOf(time.Duration(0))

// walker checks a YAML node tree against the Config struct's shape, recording the line of
// every key so later validation errors can point at it.
type walker struct {
	file  string
	errs  []*Error
	lines map[string]int // "vm.memory", "kernel.fragments[1]" -> line
}

// fail records a problem at line with the setting field ("vm.memory"), "" if none.
func (w *walker) fail(line int, field, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Line: line, Msg: withHint(fmt.Sprintf(format, args...), field)})
}

// line returns the line of field, or of the nearest enclosing key that is in the file.
func (w *walker) line(field string) int {
	for field != "" {
		if l, ok := w.lines[field]; ok {
			return l
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			break
		}
		field = field[:i]
	}
	return 0
}

func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		n = n.Content[0]
	}
	n = deref(n)
	if isNull(n) {
		return // "vm:" with nothing under it, or "packages: ~": keep the default
	}
	switch {
	case t.Kind() == reflect.Struct:
		w.mapping(n, t, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n.Line, path, "%s: expected a list such as [a, b] or lines starting with \"- \", got %s", path, describe(n))
			return
		}
		for i, item := range n.Content {
			ipath := fmt.Sprintf("%s[%d]", path, i)
			w.lines[ipath] = item.Line
			item = deref(item)
			if item.Kind != yaml.ScalarNode {
				w.fail(item.Line, ipath, "%s: expected a string, got %s", ipath, describe(item))
			}
		}
	case t == durationType:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			w.fail(n.Line, path, "%s: expected a duration such as 10m or 90s, got %s", path, describe(n))
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			w.fail(n.Line, path, "%s: expected a duration such as 10m or 90s, got %s", path, describe(n))
		}
	case t.Kind() == reflect.Int:
		var v int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil {
			got := describe(n)
			if n.Kind == yaml.ScalarNode && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
				got = "the quoted text " + got + "; hint: remove the quotes"
			}
			w.fail(n.Line, path, "%s: expected a whole number such as %s, got %s", path, exampleOf(path), got)
		}
	case t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Bool, t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			w.fail(n.Line, path, "%s: expected true or false, got %s", path, describe(n))
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			w.fail(n.Line, path, "%s: expected a string, got %s", path, describe(n))
			return
		}
		var s string
		if err := n.Decode(&s); err != nil {
			w.fail(n.Line, path, "%s: expected a string, got %s", path, describe(n))
		}
	default:
		panic(fmt.Sprintf("config: no check for field type %v", t)) // a programming error in this package
	}
}

func (w *walker) mapping(n *yaml.Node, t reflect.Type, path string) {
	where := "at top level"
	if path != "" {
		where = fmt.Sprintf("in section %q", path)
	}
	if n.Kind != yaml.MappingNode {
		if path == "" {
			w.fail(n.Line, "", "expected keys such as \"name:\" and \"vm:\" at top level, got %s", describe(n))
		} else {
			w.fail(n.Line, path, "%s: expected a section of \"key: value\" lines, got %s", path, describe(n))
		}
		return
	}
	fields := fieldsOf(t)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.fail(k.Line, "", "expected a plain word as a key %s, got %s", where, describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.fail(k.Line, "", "key %q %s is already set at line %d; hint: remove one of them", k.Value, where, first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			w.fail(k.Line, "", "unknown key %s %s%s", quote(k.Value), where, suggest(k.Value, path, fields))
			continue
		}
		sub := k.Value
		if path != "" {
			sub = path + "." + k.Value
		}
		w.lines[sub] = k.Line
		w.walk(v, f.Type, sub)
	}
}

// fieldsOf maps the yaml keys of struct type t to its fields.
func fieldsOf(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if tag := f.Tag.Get("yaml"); tag != "" && tag != "-" {
			m[tag] = f
		}
	}
	return m
}

// keysOf returns the yaml keys of struct type t in declaration order.
func keysOf(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		if tag := t.Field(i).Tag.Get("yaml"); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

// exampleOf returns the default value of the integer at path, as an example in messages.
func exampleOf(path string) string {
	if v, ok := defaultOf(path); ok && v.Kind() == reflect.Int {
		return strconv.FormatInt(v.Int(), 10)
	}
	return "0"
}

// defaultOf returns the value of the setting at path ("vm.memory") in Default(); false if
// there is no such setting or its default is empty.
func defaultOf(path string) (reflect.Value, bool) {
	v := reflect.ValueOf(Default())
	for _, k := range strings.Split(path, ".") {
		if v.Kind() != reflect.Struct {
			return reflect.Value{}, false
		}
		f, ok := fieldsOf(v.Type())[k]
		if !ok {
			return reflect.Value{}, false
		}
		v = v.FieldByIndex(f.Index)
	}
	return v, !v.IsZero()
}

// docsHint ends a message that has no more precise hint.
const docsHint = "; hint: see the keys documented in README.md#configuration"

// withHint returns msg ending in a hint: msg itself if it has one; else, for a setting
// with a default, how to get that default back; else where the settings are documented.
func withHint(msg, field string) string {
	if strings.Contains(msg, "hint: ") {
		return msg
	}
	v, ok := defaultOf(field)
	switch {
	case !ok:
		return msg + docsHint
	case v.Type() == durationType:
		return fmt.Sprintf("%s; hint: remove %s to use the default, %s", msg, field, time.Duration(v.Int()))
	case v.Kind() == reflect.Int:
		return fmt.Sprintf("%s; hint: remove %s to use the default, %d", msg, field, v.Int())
	case v.Kind() == reflect.String:
		return fmt.Sprintf("%s; hint: remove %s to use the default, %s", msg, field, quote(v.String()))
	}
	return msg + docsHint
}

// deref follows an alias (*name) to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node holds, in words for users.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of \"key: value\" lines"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return quote(n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}

// quote quotes s for a message, shortened if long.
func quote(s string) string {
	const max = 60
	if r := []rune(s); len(r) > max {
		s = string(r[:max]) + "..."
	}
	return strconv.Quote(s)
}
