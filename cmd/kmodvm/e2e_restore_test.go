package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestE2ERestore: the first up boots cold and saves the pristine guest; after a destroy the
// next up restores it (status says so) with the guest's clock set from the host's; a module
// runs in it, a panicking one is recovered by restoring the pristine save, and the next run
// works; down saves the guest's own state and up resumes it (a file written in the guest
// survives).
func TestE2ERestore(t *testing.T) {
	e2eParallel(t)
	ctx := context.Background()
	name, _ := e2eVM(t, "rst")
	n := []string{"-n", name}
	root := repoRoot(t)
	type status struct {
		State             string `json:"state"`
		RestoredFrom      string `json:"restored_from"`
		SaveBytes         int64  `json:"save_bytes"`
		PristineSaveBytes int64  `json:"pristine_save_bytes"`
	}
	statusOf := func(t *testing.T) status {
		t.Helper()
		var st status
		if out := mustCLI(t, ctx, append(n, "status", "--json")...); json.Unmarshal([]byte(out), &st) != nil {
			t.Fatalf("status --json: %s", out)
		}
		return st
	}
	up := func(t *testing.T, args ...string) string {
		t.Helper()
		code, _, errOut := cli(t, ctx, append(append([]string{}, n...), append([]string{"up"}, args...)...)...)
		if code != 0 {
			t.Fatalf("up %s: exit %d", strings.Join(args, " "), code)
		}
		return errOut
	}

	// The first up of this VM boots and saves the pristine guest.
	errOut := up(t)
	if !strings.Contains(errOut, "saving the booted guest of "+name) {
		t.Errorf("the first up did not save the booted guest:\n%s", errOut)
	}
	if st := statusOf(t); st.State != "running" || st.PristineSaveBytes == 0 || st.RestoredFrom != "" {
		t.Errorf("status after the first up: %+v; want running, booted, with a pristine save", st)
	}

	// A new incarnation restores it.
	mustCLI(t, ctx, append(n, "destroy")...)
	errOut = up(t)
	if !strings.Contains(errOut, "restoring "+name+" from its pristine save") || strings.Contains(errOut, "booting "+name) {
		t.Errorf("up after destroy did not restore the pristine save:\n%s", errOut)
	}
	if st := statusOf(t); st.State != "running" || st.RestoredFrom != "pristine" {
		t.Errorf("status after the restore: %+v; want running, restored from pristine", st)
	}

	// Its clock is the host's, not the save's.
	before := time.Now()
	out := mustCLI(t, ctx, append(n, "exec", "--", "date", "+%s.%N")...)
	after := time.Now()
	secs, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		t.Fatalf("guest date: %q", out)
	}
	guest := time.Unix(0, int64(secs*1e9))
	if guest.Before(before.Add(-time.Second)) || guest.After(after.Add(time.Second)) {
		t.Errorf("guest clock %s is not within 1 s of the host's [%s, %s]", guest, before, after)
	}

	// Modules run in it; a panic is recovered by restoring the pristine save.
	hello := filepath.Join(root, "examples/rust-hello")
	if code, out, _ := cli(t, ctx, append(n, "run", hello)...); code != 0 || !strings.Contains(out, "Hello from Rust!") {
		t.Fatalf("run rust-hello in the restored guest: exit %d", code)
	}
	code, out, _ := cli(t, ctx, append(n, "run", "--json", filepath.Join(root, "testdata/modules/panic-c"))...)
	var res struct {
		Verdict     string   `json:"verdict"`
		Restart     bool     `json:"guest_restarted"`
		RecoveredBy string   `json:"guest_recovered_by"`
		Notes       []string `json:"notes"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("run panic-c --json: %v", err)
	}
	if code != 5 || !res.Restart || res.RecoveredBy != "restored" {
		t.Errorf("run panic-c: exit %d, %+v; want 5 and the guest recovered by restore", code, res)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "the guest's own changes since its up are gone") {
		t.Errorf("run panic-c notes %q do not say what the restore discarded", res.Notes)
	}
	if code, _, _ := cli(t, ctx, append(n, "run", hello)...); code != 0 {
		t.Errorf("run rust-hello after the recovery: exit %d", code)
	}

	// down saves the guest's own state; up resumes it, with what was written in the guest.
	mustCLI(t, ctx, append(n, "exec", "--", "sh", "-c", "echo kept-across-down > /root/kept && sync")...)
	code, _, errOut = cli(t, ctx, append(n, "down")...)
	if code != 0 || !strings.Contains(errOut, "saved the state of "+name) {
		t.Fatalf("down: exit %d, did not save:\n%s", code, errOut)
	}
	if st := statusOf(t); st.State != "shutoff" || st.SaveBytes == 0 {
		t.Errorf("status after down: %+v; want shutoff with a saved state", st)
	}
	errOut = up(t)
	if !strings.Contains(errOut, "resuming "+name+" from its saved state") {
		t.Errorf("up after down did not resume the saved state:\n%s", errOut)
	}
	if out := mustCLI(t, ctx, append(n, "exec", "--", "cat", "/root/kept")...); strings.TrimSpace(out) != "kept-across-down" {
		t.Errorf("the file written before down reads %q after up", out)
	}
	if st := statusOf(t); st.RestoredFrom != "own save" || st.SaveBytes != 0 {
		t.Errorf("status after resuming: %+v; want restored from its own save, the save consumed", st)
	}
	// Resuming set the clock too.
	before = time.Now()
	out = mustCLI(t, ctx, append(n, "exec", "--", "date", "+%s")...)
	if s, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64); err != nil || s < before.Unix()-1 {
		t.Errorf("guest clock after resuming: %q, want >= %d", out, before.Unix()-1)
	}

	// up --cold boots, whatever saves exist.
	mustCLI(t, ctx, append(n, "down")...)
	errOut = up(t, "--cold")
	if !strings.Contains(errOut, "up --cold: dropping the VM's saved state") || !strings.Contains(errOut, "booting "+name) {
		t.Errorf("up --cold did not drop the saved state and boot:\n%s", errOut)
	}
	if out := mustCLI(t, ctx, append(n, "exec", "--", "cat", "/root/kept")...); strings.TrimSpace(out) != "kept-across-down" {
		t.Errorf("up --cold lost the VM's disk: /root/kept reads %q", out)
	}
}
