package images

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLogWriter(t *testing.T) {
	var file strings.Builder
	var seen []string
	w := newLogWriter(&file, 3, func(s string) { seen = append(seen, s) })
	for _, chunk := range []string{"I: one\nI: t", "wo\n\nthree\r\nfour\n", "five"} {
		if _, err := w.Write([]byte(chunk)); err != nil {
			t.Fatal(err)
		}
	}
	if file.String() != "I: one\nI: two\n\nthree\r\nfour\nfive" {
		t.Errorf("log file = %q", file.String())
	}
	if strings.Join(seen, "|") != "I: one|I: two|three|four" {
		t.Errorf("lines = %q", seen)
	}
	if got := w.Tail(); got != "three\nfour\nfive" {
		t.Errorf("Tail() = %q", got)
	}
}

func TestCommandFailedMessage(t *testing.T) {
	err := commandFailed("image build", "mmdebstrap", errors.New("exec: not started"), "E: a\nE: b", "/c/roots/h.failed.log")
	msg := err.Error()
	for _, want := range []string{"image build failed (mmdebstrap: exec: not started); last lines:\nE: a\nE: b\n", "hint: full log in /c/roots/h.failed.log"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}
