package main

import (
	"strings"

	"github.com/kmodvm/kmodvm/vm/remedy"
)

// actionHints renders each remedy action as the command that does it; {n} stands for
// " -n VM" (or nothing when no VM is known).
var actionHints = map[remedy.Action]string{
	remedy.StartVM:      "`kmodvm up{n}` starts it",
	remedy.RestartVM:    "`kmodvm down{n} && kmodvm up{n}` restarts it",
	remedy.RecreateVM:   "`kmodvm destroy{n} && kmodvm up{n}` recreates it",
	remedy.RemoveVM:     "`kmodvm destroy{n}` removes it",
	remedy.ListVMs:      "`kmodvm list` shows the VMs",
	remedy.ShowConsole:  "`kmodvm logs{n}` shows its console",
	remedy.FollowLog:    "`kmodvm logs -f{n}` follows it again",
	remedy.PickName:     "pick another name with -n",
	remedy.CreateVM:     "`kmodvm up{n}` creates it",
	remedy.BuildImage:   "`kmodvm image build` builds it",
	remedy.UseTCG:       "`--accel tcg` runs without KVM (slow)",
	remedy.UseAutoAccel: "`--accel auto` falls back by itself",
}

// renderHint turns the actions a package below cmd/ attached to an error into the commands
// that do them, for the VM the error names or, when it names none, the VM of this command.
func renderHint(re *remedy.Error, vmName string) string {
	if re.VM != "" {
		vmName = re.VM
	}
	n := ""
	if vmName != "" {
		n = " -n " + vmName
	}
	var parts []string
	for _, a := range re.Do {
		if h, ok := actionHints[a]; ok {
			parts = append(parts, strings.ReplaceAll(h, "{n}", n))
		}
	}
	hint := strings.Join(parts, ", ")
	if re.Note != "" {
		hint = strings.TrimSpace(re.Note + " " + hint)
	}
	return "hint: " + hint
}
