package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/kmodvm/kmodvm/provision/editdist"
)

// suggest returns " (did you mean ...?)" for an unknown key found in section (or at top
// level when section is ""), or the list of known keys when nothing is close.
func suggest(key, section string, fields map[string]reflect.StructField) string {
	lower := strings.ToLower(key)
	var prefixed []string // "pack" for "packages"
	for k := range fields {
		if len(lower) >= 3 && strings.HasPrefix(k, lower) {
			prefixed = append(prefixed, k)
		}
	}
	if len(prefixed) == 1 {
		return fmt.Sprintf(" (did you mean %q?)", prefixed[0])
	}
	best, bestDist := "", 1<<30
	for k := range fields {
		d := editdist.Distance(lower, k, maxTypo)
		if d < bestDist || (d == bestDist && k < best) {
			best, bestDist = k, d
		}
	}
	if best != "" && likelyTypo(lower, best, bestDist) {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	// The key may belong in another section: "memory" at top level, "suite" under kernel.
	var elsewhere []string
	root := fieldsOf(reflect.TypeOf(Config{}))
	for name, f := range root {
		if name == section || f.Type.Kind() != reflect.Struct {
			continue
		}
		for k := range fieldsOf(f.Type) {
			if k == lower {
				elsewhere = append(elsewhere, name+"."+k)
			}
		}
	}
	if section != "" {
		if f, ok := root[lower]; ok && f.Type.Kind() != reflect.Struct {
			elsewhere = append(elsewhere, lower) // "name" written inside a section
		}
	}
	if len(elsewhere) > 0 {
		sort.Strings(elsewhere)
		sec, _, ok := strings.Cut(elsewhere[0], ".")
		if !ok {
			return fmt.Sprintf(" (did you mean the top-level key %q?)", elsewhere[0])
		}
		return fmt.Sprintf(" (did you mean %q? it belongs in section %q)", elsewhere[0], sec)
	}
	var t reflect.Type = reflect.TypeOf(Config{})
	if section != "" {
		t = root[section].Type
	}
	return fmt.Sprintf(" (known keys: %s)", strings.Join(keysOf(t), ", "))
}

// maxTypo is the most edits a key can be away from a known one and still be its typo.
const maxTypo = 2

// likelyTypo reports whether key, at edit distance d from known, is probably a typo of it.
func likelyTypo(key, known string, d int) bool {
	switch {
	case d == 0:
		return true
	case len(known) <= 4:
		return d <= 1
	default:
		return d <= maxTypo
	}
}
