package sshtest

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// pty is a pseudo-terminal pair: the server keeps ptm, the child gets tty.
type pty struct {
	ptm *os.File
	tty *os.File // nil once handed to the child
}

func openPTY() (*pty, error) {
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	var n uint32
	err = control(ptm, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlock pty: %w", err)
		}
		n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		if err != nil {
			return fmt.Errorf("get pty number: %w", err)
		}
		return nil
	})
	if err != nil {
		ptm.Close()
		return nil, err
	}
	name := fmt.Sprintf("/dev/pts/%d", n)
	tty, err := os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		ptm.Close()
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return &pty{ptm: ptm, tty: tty}, nil
}

// SetSize sets the terminal's size in characters.
func (p *pty) SetSize(width, height int) error {
	return control(p.ptm, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(width), Row: uint16(height)})
	})
}

// control runs fn on f's descriptor without switching it to blocking mode
// (as File.Fd would), so that Close still interrupts a pending Read.
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var fnErr error
	if err := rc.Control(func(fd uintptr) { fnErr = fn(int(fd)) }); err != nil {
		return err
	}
	return fnErr
}

func (p *pty) Close() {
	p.ptm.Close()
	if p.tty != nil {
		p.tty.Close()
	}
}
