package main

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestE2EMCP: an MCP client starts the real `kmodvm mcp` binary and speaks JSON-RPC to it on
// stdin/stdout, as an agent's client does: initialize, tools/list, up (with progress
// notifications), run examples/rust-hello, logs, down.
func TestE2EMCP(t *testing.T) {
	e2eParallel(t)
	name, _ := e2eVM(t, "e2e-mcp")
	root := repoRoot(t)

	var stderr lockedBuffer
	cmd := exec.Command(kmodvmBinary(t), "mcp", "-n", name)
	cmd.Stderr = &stderr
	var mu sync.Mutex
	var progress []string
	client := mcp.NewClient(&mcp.Implementation{Name: "kmodvm-e2e", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			progress = append(progress, req.Params.Message)
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute) // a first up builds the image and kernel
	defer cancel()
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("initialize: %v\nstderr:\n%s", err, stderr.String())
	}
	defer func() {
		cs.Close()
		t.Logf("kmodvm mcp stderr:\n%s", stderr.String())
		if strings.Contains(stderr.String(), `"jsonrpc"`) {
			t.Errorf("protocol traffic on stderr")
		}
	}()
	if init := cs.InitializeResult(); init.ServerInfo.Name != "kmodvm" {
		t.Errorf("initialize: server %+v", init.ServerInfo)
	}

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if want := []string{"bindings", "down", "logs", "run", "status", "test", "up"}; !slices.Equal(names, want) {
		t.Errorf("tools %v, want %v (exec only with --allow-exec)", names, want)
	}

	// call calls a tool and decodes its structured result into out; the test stops on an
	// error result.
	call := func(tool string, args map[string]any, out any) {
		t.Helper()
		params := &mcp.CallToolParams{Name: tool, Arguments: args}
		params.SetProgressToken(tool)
		start := time.Now()
		res, err := cs.CallTool(ctx, params)
		if err != nil {
			t.Fatalf("tools/call %s: %v", tool, err)
		}
		raw, _ := json.Marshal(res.StructuredContent)
		t.Logf("tools/call %s %v (%.1f s): isError %v\n%s", tool, args, time.Since(start).Seconds(), res.IsError, raw)
		if res.IsError {
			t.Fatalf("tools/call %s: error result: %s", tool, resultText(res))
		}
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("tools/call %s: structured content: %v", tool, err)
		}
	}

	var st struct {
		State         string `json:"state"`
		KernelRelease string `json:"kernel_release"`
	}
	call("up", nil, &st)
	if st.State != "running" || !strings.Contains(st.KernelRelease, "kmodvm") {
		t.Fatalf("after up: state %q, kernel %q", st.State, st.KernelRelease)
	}
	mu.Lock()
	upProgress := slices.ContainsFunc(progress, func(m string) bool { return strings.Contains(m, name+" is up in") })
	mu.Unlock()
	if !upProgress {
		t.Errorf("no progress notification said the VM is up; got %q", progress)
	}

	var rj struct {
		Verdict  string `json:"verdict"`
		ExitCode int    `json:"exit_code"`
		Build    struct {
			OK bool `json:"ok"`
		} `json:"build"`
		Steps []struct {
			Action string   `json:"action"`
			Log    []string `json:"log"`
		} `json:"steps"`
	}
	call("run", map[string]any{"dir": filepath.Join(root, "examples/rust-hello")}, &rj)
	var loadLog string
	for _, s := range rj.Steps {
		if s.Action == "load" {
			loadLog += strings.Join(s.Log, "\n")
		}
	}
	if rj.Verdict != "ok" || rj.ExitCode != 0 || !rj.Build.OK || !strings.Contains(loadLog, "Hello from Rust!") {
		t.Errorf("run examples/rust-hello: verdict %q, exit code %d, build ok %v, load log:\n%s", rj.Verdict, rj.ExitCode, rj.Build.OK, loadLog)
	}

	var logs struct {
		Records []logLine `json:"records"`
	}
	call("logs", map[string]any{"module": "rust_hello", "tail": 20}, &logs)
	if !slices.ContainsFunc(logs.Records, func(l logLine) bool { return strings.Contains(l.Text, "Hello from Rust!") }) {
		t.Errorf("logs of rust_hello lack its greeting: %+v", logs.Records)
	}

	call("down", nil, &st)
	if st.State != "shutoff" {
		t.Errorf("after down: state %q", st.State)
	}
}
