// Package remedy names what a user can do about a failure in the words of the domain (start
// the VM, recreate it, show its console), so that no package below the CLI spells a command
// or a flag: the CLI renders each action as the command that does it.
package remedy

import (
	"errors"
	"fmt"
)

// Action is one thing the user can do.
type Action int

// The actions, each rendered by the CLI as one command.
const (
	StartVM      Action = iota + 1 // boot the VM (creating it when it does not exist)
	RestartVM                      // stop it hard and boot it again
	RecreateVM                     // remove it and create it anew
	RemoveVM                       // remove it and its state
	ListVMs                        // show the VMs
	ShowConsole                    // print its kernel/console log
	FollowLog                      // follow its kernel log again
	PickName                       // choose another VM name
	CreateVM                       // create and boot a VM that does not exist yet
	BuildImage                     // build the toolchain root and guest disk
	UseTCG                         // run the guest under TCG, without KVM (slow)
	UseAutoAccel                   // let kmodvm fall back to TCG when KVM does not work
)

var actionNames = [...]string{StartVM: "StartVM", RestartVM: "RestartVM", RecreateVM: "RecreateVM",
	RemoveVM: "RemoveVM", ListVMs: "ListVMs", ShowConsole: "ShowConsole", FollowLog: "FollowLog",
	PickName: "PickName", CreateVM: "CreateVM", BuildImage: "BuildImage", UseTCG: "UseTCG", UseAutoAccel: "UseAutoAccel"}

// String is the action's Go name, for tests and logs.
func (a Action) String() string {
	if a > 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Error is a failure with what the user can do about it. Error() is the failure alone; the
// CLI appends the rendered hint.
type Error struct {
	Err  error
	VM   string   // the VM the actions apply to ("" when none)
	Note string   // prose before the actions, in domain words ("wait for it, or")
	Do   []Action // what to do, in order
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// With attaches actions on vm to err (nil stays nil).
func With(err error, vm string, do ...Action) error {
	return WithNote(err, vm, "", do...)
}

// WithNote attaches actions on vm to err (nil stays nil), with prose before them.
func WithNote(err error, vm, note string, do ...Action) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err, VM: vm, Note: note, Do: do}
}

// Find returns the outermost remedy in err's chain, or nil.
func Find(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
