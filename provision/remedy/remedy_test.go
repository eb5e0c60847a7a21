package remedy

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"testing"
)

func TestRemedies(t *testing.T) {
	base := fs.ErrNotExist
	inner := With(base, "dev", StartVM)
	cases := []struct {
		name   string
		err    error
		want   *Error // nil: no remedy
		isBase bool   // the chain still reaches fs.ErrNotExist
	}{
		{"nil stays nil", With(nil, "dev", StartVM), nil, false},
		{"nil with a note stays nil", WithNote(nil, "dev", "wait", StartVM), nil, false},
		{"no remedy", fmt.Errorf("open: %w", base), nil, true},
		{"with actions", With(base, "dev", StartVM, ShowConsole), &Error{VM: "dev", Do: []Action{StartVM, ShowConsole}}, true},
		{"with a note", WithNote(base, "", "wait for it, or", PickName), &Error{Note: "wait for it, or", Do: []Action{PickName}}, true},
		{"found through wrapping", fmt.Errorf("up: %w", inner), &Error{VM: "dev", Do: []Action{StartVM}}, true},
		{"the outermost wins", With(fmt.Errorf("run: %w", inner), "dev", RecreateVM), &Error{VM: "dev", Do: []Action{RecreateVM}}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Find(c.err)
			switch {
			case c.want == nil && got != nil:
				t.Fatalf("Find = %+v, want none", got)
			case c.want == nil:
			case got == nil:
				t.Fatalf("Find(%v) = nil, want %+v", c.err, c.want)
			case got.VM != c.want.VM || got.Note != c.want.Note || !slices.Equal(got.Do, c.want.Do):
				t.Errorf("Find = %+v, want %+v", got, c.want)
			}
			if c.isBase != errors.Is(c.err, base) {
				t.Errorf("errors.Is(err, base) = %v, want %v", !c.isBase, c.isBase)
			}
			if got != nil && got.Error() != got.Err.Error() {
				t.Errorf("Error() = %q, want the failure alone %q", got.Error(), got.Err.Error())
			}
		})
	}
}
