package ktap

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary logs to Parse, seeded with the fixtures. Whatever the input,
// Parse must not panic, every test must be numbered and have a known status, and the
// counts must add up to the leaf tests.
func FuzzParse(f *testing.F) {
	for _, name := range fixtures(f) {
		data, err := os.ReadFile(filepath.Join("testdata", name+".log"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("KTAP version 1\n1..2\n  KTAP version 1\n  1..1\n    ok 1 a\n  not ok 1 b\n"))
	f.Add([]byte("# Subtest: x\n1..1\nok 1 x\nok 1 x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		leaves := 0
		var check func(tests []Test)
		check = func(tests []Test) {
			for _, x := range tests {
				if x.Number <= 0 {
					t.Errorf("test %q has number %d", x.Name, x.Number)
				}
				if !knownStatus(x.Status) {
					t.Errorf("test %q has status %q", x.Name, x.Status)
				}
				if x.Status == Crashed && x.Reason == "" {
					t.Errorf("crashed test %q has no reason", x.Name)
				}
				if x.Duration < 0 {
					t.Errorf("test %q has duration %v", x.Name, x.Duration)
				}
				if len(x.Subtests) == 0 {
					leaves++
				}
				check(x.Subtests)
			}
		}
		for _, s := range r.Suites {
			if !knownStatus(s.Status) {
				t.Errorf("suite %q has status %q", s.Name, s.Status)
			}
			if s.Planned < -1 {
				t.Errorf("suite %q has plan %d", s.Name, s.Planned)
			}
			if len(s.Tests) == 0 && s.Planned != 0 {
				leaves++
			}
			check(s.Tests)
		}
		// A parameterized test reported failed whose parameters all passed counts once
		// more, so the counts may exceed the leaves by that.
		if c := r.Counts(); c.Total() < leaves {
			t.Errorf("counts %+v add up to %d, fewer than the %d leaf tests", c, c.Total(), leaves)
		}
	})
}

func knownStatus(s Status) bool {
	return s == Pass || s == Fail || s == Skip || s == Crashed
}
