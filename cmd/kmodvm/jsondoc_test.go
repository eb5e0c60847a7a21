package main

import (
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsonOutputs is every --json output: its schema and the Go value it prints.
var jsonOutputs = []struct {
	schema string
	value  any
}{
	{schemaRun, runJSON{}},
	{schemaTest, runJSON{}},
	{schemaWatch, watchJSON{}},
	{schemaUp, upJSON{}},
	{schemaStatus, statusJSON{}},
	{schemaList, listJSON{}},
	{schemaDoctor, doctorJSON{}},
	{schemaLogs, logLine{}},
	{schemaKernelConfig, configReport{}},
	{schemaKernelBuild, kernelBuildJSON{}},
	{schemaImageBuild, imageBuildJSON{}},
	{schemaCacheKey, cacheKeyJSON{}},
	{schemaCrashes, crashesJSON{}},
	{schemaCrash, crashJSON{}},
	{schemaNew, newJSON{}},
	{schemaBindings, bindingsJSON{}},
	{schemaDoc, docJSON{}},
	{schemaIDE, ideJSON{}},
	{schemaMatrix, matrixJSON{}},
	{schemaDown, downJSON{}},
	{schemaDestroy, destroyJSON{}},
	{schemaSync, syncJSON{}},
	{schemaExec, execJSON{}},
}

// jsonFields lists the fields encoding/json writes for t, as paths: "steps[].findings[].class".
// A struct inside a list adds "[]."; a type that contains itself (a test's subtests) is listed
// once, as a field, and not walked again, and so is another output's object (watch's run):
// its own section documents it.
func jsonFields(t reflect.Type, prefix string, seen []reflect.Type) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous { // encoding/json promotes an unexported embedded struct's fields
			continue
		}
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			out = append(out, jsonFields(ft, prefix, seen)...)
			continue
		}
		if name == "" {
			name = f.Name
		}
		path := prefix + name
		out = append(out, path)
		elem, list := ft, ""
		if ft.Kind() == reflect.Slice {
			elem, list = ft.Elem(), "[]"
		}
		for elem.Kind() == reflect.Pointer {
			elem = elem.Elem()
		}
		if elem.Kind() != reflect.Struct || elem == reflect.TypeFor[time.Time]() || elem == t || slices.Contains(seen, elem) || isOutput(elem) {
			continue
		}
		out = append(out, jsonFields(elem, path+list+".", append(seen, t))...)
	}
	return out
}

// isOutput says whether t is the type of a --json output.
func isOutput(t reflect.Type) bool {
	for _, o := range jsonOutputs {
		if reflect.TypeOf(o.value) == t {
			return true
		}
	}
	return false
}

// documentedFields reads docs/json.md: for each schema, the fields in the first column of the
// table of the section that names it.
func documentedFields(t *testing.T) map[string][]string {
	data, err := os.ReadFile("../../docs/json.md")
	if err != nil {
		t.Fatal(err)
	}
	schemaRE := regexp.MustCompile("`(kmodvm\\.[a-z-]+/v[0-9]+)`")
	rowRE := regexp.MustCompile("^\\| `([^`]+)` \\|")
	docs := map[string][]string{}
	var current []string
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "## ") {
			current = nil
			for _, m := range schemaRE.FindAllStringSubmatch(line, -1) {
				current = append(current, m[1])
			}
			continue
		}
		if m := rowRE.FindStringSubmatch(line); m != nil {
			for _, s := range current {
				docs[s] = append(docs[s], m[1])
			}
		}
	}
	return docs
}

// TestJSONDocumented: every field every --json output can print is documented in
// docs/json.md under its command's schema, and nothing documented is gone from the code. Each
// output's Go value carries the schema it says.
func TestJSONDocumented(t *testing.T) {
	docs := documentedFields(t)
	for _, o := range jsonOutputs {
		got := jsonFields(reflect.TypeOf(o.value), "", nil)
		documented := docs[o.schema]
		if len(documented) == 0 {
			t.Errorf("docs/json.md has no section naming `%s` with a table of its fields", o.schema)
			continue
		}
		for _, f := range got {
			if !slices.Contains(documented, f) {
				t.Errorf("%s: field %q is not documented in docs/json.md", o.schema, f)
			}
		}
		for _, f := range documented {
			if !slices.Contains(got, f) {
				t.Errorf("%s: docs/json.md documents %q, which the output has not", o.schema, f)
			}
		}
		if got[0] != "schema" {
			t.Errorf("%s: the first field is %q, not schema", o.schema, got[0])
		}
	}
}
