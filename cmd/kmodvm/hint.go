package main

import (
	"fmt"
	"strings"

	"github.com/kmodvm/kmodvm/vm/remedy"
)

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
		switch a {
		case remedy.StartVM:
			parts = append(parts, fmt.Sprintf("`kmodvm up%s` starts it", n))
		case remedy.RestartVM:
			parts = append(parts, fmt.Sprintf("`kmodvm down%s && kmodvm up%s` restarts it", n, n))
		case remedy.RecreateVM:
			parts = append(parts, fmt.Sprintf("`kmodvm destroy%s && kmodvm up%s` recreates it", n, n))
		case remedy.RemoveVM:
			parts = append(parts, fmt.Sprintf("`kmodvm destroy%s` removes it", n))
		case remedy.ListVMs:
			parts = append(parts, "`kmodvm list` shows the VMs")
		case remedy.ShowConsole:
			parts = append(parts, fmt.Sprintf("`kmodvm logs%s` shows its console", n))
		case remedy.FollowLog:
			parts = append(parts, fmt.Sprintf("`kmodvm logs -f%s` follows it again", n))
		case remedy.PickName:
			parts = append(parts, "pick another name with -n")
		case remedy.CreateVM:
			parts = append(parts, fmt.Sprintf("`kmodvm up%s` creates it", n))
		case remedy.BuildImage:
			parts = append(parts, "`kmodvm image build` builds it")
		case remedy.UseTCG:
			parts = append(parts, "`--accel tcg` runs without KVM (slow)")
		case remedy.UseAutoAccel:
			parts = append(parts, "`--accel auto` falls back by itself")
		}
	}
	hint := strings.Join(parts, ", ")
	if re.Note != "" {
		hint = strings.TrimSpace(re.Note + " " + hint)
	}
	return "hint: " + hint
}
