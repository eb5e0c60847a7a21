package remedy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestWith(t *testing.T) {
	if With(nil, "dev", StartVM) != nil || WithNote(nil, "dev", "note", StartVM) != nil {
		t.Error("a nil error got a remedy")
	}
	base := errors.New("boom")
	err := fmt.Errorf("context: %w", WithNote(base, "dev", "wait, or", RemoveVM))
	re := Find(err)
	if re == nil || re.VM != "dev" || re.Note != "wait, or" || len(re.Do) != 1 || re.Do[0] != RemoveVM {
		t.Fatalf("Find = %+v", re)
	}
	if !errors.Is(err, base) || err.Error() != "context: boom" {
		t.Errorf("the remedy changed the error: %q", err)
	}
	if Find(base) != nil {
		t.Error("Find found a remedy in a plain error")
	}
}

func TestActionString(t *testing.T) {
	for a := StartVM; a <= UseAutoAccel; a++ { // UseAutoAccel: the last action
		if s := a.String(); strings.HasPrefix(s, "Action(") {
			t.Errorf("action %d has no name: %q", int(a), s)
		}
	}
	if got := Action(0).String(); got != "Action(0)" {
		t.Errorf("Action(0).String() = %q", got)
	}
}
