package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/remedy"
)

func TestRenderHint(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name string
		re   *remedy.Error
		vm   string
		want string
	}{
		{"start, command's VM", &remedy.Error{Err: boom, Do: []remedy.Action{remedy.StartVM}}, "dev", "hint: `kmodvm up -n dev` starts it"},
		{"error's VM wins", &remedy.Error{Err: boom, VM: "other", Do: []remedy.Action{remedy.RemoveVM}}, "dev", "hint: `kmodvm destroy -n other` removes it"},
		{"no VM known", &remedy.Error{Err: boom, Do: []remedy.Action{remedy.RestartVM}}, "", "hint: `kmodvm down && kmodvm up` restarts it"},
		{"note first", &remedy.Error{Err: boom, Note: "rerun after", Do: []remedy.Action{remedy.StartVM}}, "dev", "hint: rerun after `kmodvm up -n dev` starts it"},
		{"several", &remedy.Error{Err: boom, Do: []remedy.Action{remedy.RecreateVM, remedy.ListVMs, remedy.ShowConsole, remedy.FollowLog, remedy.PickName}}, "d",
			"hint: `kmodvm destroy -n d && kmodvm up -n d` recreates it, `kmodvm list` shows the VMs, `kmodvm logs -n d` shows its console, `kmodvm logs -f -n d` follows it again, pick another name with -n"},
		{"create, build", &remedy.Error{Err: boom, Do: []remedy.Action{remedy.CreateVM, remedy.BuildImage}}, "dev",
			"hint: `kmodvm up -n dev` creates it, `kmodvm image build` builds it"},
		{"accel", &remedy.Error{Err: boom, Do: []remedy.Action{remedy.UseTCG, remedy.UseAutoAccel}}, "dev",
			"hint: `--accel tcg` runs without KVM (slow), `--accel auto` falls back by itself"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := renderHint(c.re, c.vm); got != c.want {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestEveryActionHasAHint: an action added to remedy without a rendering here would vanish
// from every hint.
func TestEveryActionHasAHint(t *testing.T) {
	for a := remedy.Action(1); !strings.HasPrefix(a.String(), "Action("); a++ {
		if actionHints[a] == "" {
			t.Errorf("remedy.%s has no hint", a)
		}
	}
}
