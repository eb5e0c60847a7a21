package module

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/remedy"
	"github.com/kmodvm/kmodvm/vm/sshclient"
)

// stoppedGuest is a guest that is not running, stopped from outside when how is set.
type stoppedGuest struct{ how string }

func (stoppedGuest) SSH() *sshclient.Client                               { return nil }
func (stoppedGuest) ConsoleLog() string                                   { return "/var/lib/kmodvm/vms/dev/console.log" }
func (stoppedGuest) Running(context.Context) (bool, error)                { return false, nil }
func (g stoppedGuest) StoppedFromOutside(context.Context) (string, error) { return g.how, nil }
func (stoppedGuest) InjectNMI(context.Context) error                      { return errors.New("domain is not running") }
func (stoppedGuest) Restart(context.Context) (string, error)              { return "rebooted", nil }
func (stoppedGuest) Close() error                                         { return nil }

// The runner's errors name what to do as remedies, never as a command line: the CLI renders
// the commands.
func TestRunnerErrorsCarryRemedies(t *testing.T) {
	lost := errors.New("connection lost")
	cases := []struct {
		name   string
		guest  stoppedGuest
		want   remedy.Action
		inText string
	}{
		{"stopped from outside", stoppedGuest{how: "destroyed"}, remedy.StartVM, "left stopped"},
		{"stopped by itself", stoppedGuest{}, remedy.StartVM, "console log /var/lib/kmodvm/vms/dev/console.log tells why"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &Runner{guest: c.guest}
			err := r.explainLost(context.Background(), "sync", lost)
			rem := remedy.Find(err)
			if rem == nil || !slices.Contains(rem.Do, c.want) {
				t.Fatalf("err = %v, remedy %+v: want action %v", err, rem, c.want)
			}
			if msg := err.Error(); strings.Contains(msg, "`") || strings.Contains(msg, "hint:") || !strings.Contains(msg, c.inText) {
				t.Errorf("message %q: want %q and no command", msg, c.inText)
			}
		})
	}
}
