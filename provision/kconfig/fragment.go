package kconfig

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SrcArch is the kernel source architecture kmodvm builds for.
const SrcArch = "x86"

// A Fragment is one named source of assignments: a file, an in-tree name
// like "kvm_guest.config", or inline lines from kmodvm.yaml.
type Fragment struct {
	Name   string
	Config *Config
}

// ParseFragment parses data as a config fragment called name. The same
// symbol given two different values inside one fragment is an error naming
// both lines.
func ParseFragment(name string, data []byte) (Fragment, error) {
	c, err := parse(bytes.NewReader(data), name, true)
	if err != nil {
		return Fragment{}, fmt.Errorf("parse config fragment: %w", err)
	}
	return Fragment{Name: name, Config: c}, nil
}

// ResolveFragment turns a user's spec into a Fragment. A spec is one of:
//   - inline lines: "CONFIG_X=y", "# CONFIG_X is not set" (several lines allowed);
//   - a file path, relative to baseDir unless absolute;
//   - an in-tree name such as "kvm_guest.config" (or "kvm_guest"), looked up in
//     <tree>/kernel/configs/ and <tree>/arch/x86/configs/.
//
// A name found nowhere is an error listing every place that was tried.
func ResolveFragment(spec, tree, baseDir string) (Fragment, error) {
	trimmed := strings.TrimSpace(spec)
	if trimmed == "" {
		return Fragment{}, errors.New("empty config fragment: give CONFIG_X=y lines, a file path or an in-tree name like kvm_guest.config")
	}
	if isInline(trimmed) {
		return ParseFragment(inlineName(trimmed), []byte(spec))
	}

	var tried []string
	path := spec
	if !filepath.IsAbs(path) {
		path = filepath.Join(baseDir, spec)
	}
	if data, err := os.ReadFile(path); err == nil {
		return ParseFragment(spec, data)
	} else if !errors.Is(err, os.ErrNotExist) {
		return Fragment{}, fmt.Errorf("read config fragment %q: %w", path, err)
	}
	tried = append(tried, path)

	// In-tree names are bare file names.
	if !strings.ContainsRune(spec, '/') && tree != "" {
		names := []string{spec}
		if !strings.HasSuffix(spec, ".config") {
			names = append(names, spec+".config")
		}
		for _, dir := range []string{"kernel/configs", "arch/" + SrcArch + "/configs"} {
			for _, n := range names {
				p := filepath.Join(tree, dir, n)
				data, err := os.ReadFile(p)
				if err == nil {
					return ParseFragment(filepath.ToSlash(filepath.Join(dir, n)), data)
				}
				if !errors.Is(err, os.ErrNotExist) {
					return Fragment{}, fmt.Errorf("read config fragment %q: %w", p, err)
				}
				tried = append(tried, p)
			}
		}
	}
	return Fragment{}, fmt.Errorf("config fragment %q not found; looked in: %s. hint: give a path relative to %s, an in-tree name like kvm_guest.config (see %s), or inline lines like CONFIG_X=y",
		spec, strings.Join(tried, ", "), baseDir, filepath.Join(tree, "kernel/configs"))
}

// isInline reports whether spec is made of config lines rather than a name.
func isInline(spec string) bool {
	return strings.ContainsRune(spec, '\n') || strings.HasPrefix(spec, Prefix) || strings.HasPrefix(spec, "# "+Prefix)
}

// inlineName names inline lines after their first assignment.
func inlineName(spec string) string {
	first, rest, _ := strings.Cut(spec, "\n")
	name := "inline " + strings.TrimSpace(first)
	if strings.TrimSpace(rest) != "" {
		name += " ..."
	}
	return name
}

// Layer is a set of fragments applied together. In Merge, later layers win
// over earlier ones; two fragments of one layer must not disagree.
type Layer struct {
	Name      string
	Fragments []Fragment
}

// Merge applies the layers in order. A symbol set by a later layer replaces
// the value from an earlier one. Two fragments of the same layer that give a
// symbol different values are an error naming both fragments and lines; every
// such conflict is listed.
func Merge(layers ...Layer) (*Config, error) {
	out := New()
	var conflicts []string
	for _, l := range layers {
		layer := New()
		for _, f := range l.Fragments {
			if f.Config == nil {
				continue
			}
			for _, e := range f.Config.entries {
				if e.src == "" {
					e.src = f.Name
				}
				if i, ok := layer.index[e.sym]; ok {
					if prev := layer.entries[i]; prev.val != e.val {
						conflicts = append(conflicts, fmt.Sprintf("  %s%s: %s says %s but %s says %s",
							Prefix, e.sym, where(prev), prev.val, where(e), e.val))
					}
					continue // agreeing fragments: the first one is the origin
				}
				layer.set(e)
			}
		}
		for _, e := range layer.entries {
			out.set(e)
		}
		if len(conflicts) > 0 {
			return nil, fmt.Errorf("config layer %q: its fragments disagree on %d symbol(s):\n%s\nhint: remove one of the two lines, or move one fragment to a later layer so that it wins",
				l.Name, len(conflicts), strings.Join(conflicts, "\n"))
		}
	}
	return out, nil
}

func where(e entry) string {
	if e.line > 0 {
		return fmt.Sprintf("%s:%d", e.src, e.line)
	}
	return e.src
}
