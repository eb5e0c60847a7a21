package treesync

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// IgnoreFile is the name of the per-module ignore file, read from the root
// of the local tree.
const IgnoreFile = ".kmodvmignore"

// TreeError is a problem with the local module tree that its owner has to
// fix (a symlink leading out of it, a bad ignore pattern). It is found
// before anything is copied.
type TreeError struct{ Msg string }

func (e *TreeError) Error() string { return e.Msg }

// BuildOutputs are the file patterns ignored in every tree: what kbuild and
// cargo produce. They match files only, so a directory that happens to be
// called "foo.d" is still synced.
var BuildOutputs = []string{
	"*.o", "*.ko", "*.mod", "*.mod.c", "*.mod.o", ".*.cmd",
	"Module.symvers", "modules.order", "*.rmeta", "*.d",
}

// BuildDirs are the directories ignored in every tree.
var BuildDirs = []string{"target/", ".git/", ".tmp_versions/"}

// rule is one ignore pattern.
type rule struct {
	pattern  string // path.Match pattern, without the '!', leading '/', '**/' or trailing '/'
	negate   bool   // "!pat": re-include what an earlier rule ignored
	dirOnly  bool   // "pat/": matches directories only
	fileOnly bool   // built-in build-output rules: match non-directories only
	anchored bool   // pattern contains a '/': matched against the whole relative path
	anyDepth bool   // "**/pat": matched against every trailing part of the path
}

// Matcher decides which relative paths a sync leaves alone. Rules are
// evaluated in order and the last matching rule wins (so "!keep.o" in
// .kmodvmignore re-includes a file a built-in rule ignores). As in git, a
// file inside an ignored directory cannot be re-included: the directory is
// never entered.
type Matcher struct {
	rules []rule
}

// NewMatcher returns a matcher with the built-in rules followed by the
// given gitignore-like patterns. src names where the patterns came from, for
// error messages.
func NewMatcher(src string, patterns []string) (*Matcher, error) {
	m := &Matcher{}
	for _, p := range BuildOutputs {
		m.rules = append(m.rules, rule{pattern: p, fileOnly: true})
	}
	for _, p := range BuildDirs {
		r, _, err := parseRule(p)
		if err != nil {
			return nil, err
		}
		m.rules = append(m.rules, r)
	}
	if err := m.add(src, patterns); err != nil {
		return nil, err
	}
	return m, nil
}

// add appends gitignore-like patterns, one per element.
func (m *Matcher) add(src string, patterns []string) error {
	for i, line := range patterns {
		r, ok, err := parseRule(line)
		if err != nil {
			return &TreeError{Msg: fmt.Sprintf("sync: %s line %d: bad ignore pattern %q: %v; hint: fix or remove the line (patterns use *, ? and [...] as in .gitignore)", src, i+1, line, err)}
		}
		if ok {
			m.rules = append(m.rules, r)
		}
	}
	return nil
}

// parseIgnoreFile splits the contents of a .kmodvmignore into lines, however
// long (a line-length limit would silently drop every rule after a long line).
func parseIgnoreFile(data []byte) []string {
	return strings.Split(string(data), "\n")
}

// parseRule parses one line. ok is false for blank lines and comments.
func parseRule(line string) (r rule, ok bool, err error) {
	line = strings.TrimSuffix(line, "\r")
	// Trailing spaces are ignored unless escaped, as in git.
	for strings.HasSuffix(line, " ") && !strings.HasSuffix(line, `\ `) {
		line = line[:len(line)-1]
	}
	if line == "" || strings.HasPrefix(line, "#") {
		return rule{}, false, nil
	}
	if strings.HasPrefix(line, "!") {
		r.negate = true
		line = line[1:]
	} else if strings.HasPrefix(line, `\!`) || strings.HasPrefix(line, `\#`) {
		line = line[1:]
	}
	if strings.HasSuffix(line, "/") {
		r.dirOnly = true
		line = strings.TrimRight(line, "/")
	}
	if strings.HasPrefix(line, "**/") {
		r.anyDepth = true
		line = strings.TrimPrefix(line, "**/")
	}
	if strings.HasPrefix(line, "/") {
		r.anchored = true
		line = strings.TrimLeft(line, "/")
	}
	if strings.Contains(line, "/") && !r.anyDepth {
		r.anchored = true
	}
	if line == "" {
		return rule{}, false, nil
	}
	for _, el := range strings.Split(line, "/") {
		if el == ".." {
			return rule{}, false, errors.New(`".." cannot be used: patterns match paths inside the module directory, never outside it`)
		}
	}
	if _, err := path.Match(line, "x"); err != nil {
		return rule{}, false, err
	}
	r.pattern = line
	return r, true, nil
}

func (r rule) match(rel string, isDir bool) bool {
	if (r.dirOnly && !isDir) || (r.fileOnly && isDir) {
		return false
	}
	switch {
	case r.anyDepth:
		for i := 0; i < len(rel); i++ {
			if i == 0 || rel[i-1] == '/' {
				if ok, _ := path.Match(r.pattern, rel[i:]); ok {
					return true
				}
			}
		}
		return false
	case r.anchored:
		ok, _ := path.Match(r.pattern, rel)
		return ok
	default:
		ok, _ := path.Match(r.pattern, path.Base(rel))
		return ok
	}
}

// Ignored reports whether rel (slash-separated, relative to the tree root)
// is ignored. The caller does not descend into ignored directories.
func (m *Matcher) Ignored(rel string, isDir bool) bool {
	ignored := false
	for _, r := range m.rules {
		if r.match(rel, isDir) {
			ignored = !r.negate
		}
	}
	return ignored
}
