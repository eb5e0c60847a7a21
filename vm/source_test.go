package vm

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// These tests read every Go file of the repository and check security properties that must
// hold everywhere, not only in the code the other tests exercise: the guest's host key is
// always verified, libvirt is reached only through the configured URI, and no command line is
// handed to a shell on the host. Each rule is also run on small bad sources, so a rule that
// stopped finding anything would fail here too.

// A rule inspects one parsed file and returns what it finds wrong, one line each.
type rule func(fset *token.FileSet, rel string, f *ast.File) []string

const (
	sshPkg     = "golang.org/x/crypto/ssh"
	libvirtPkg = "github.com/digitalocean/go-libvirt"
	execPkg    = "os/exec"
)

// importName is the name file f uses for the package at path ("" when f does not import it).
func importName(f *ast.File, path, defaultName string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return defaultName
		}
	}
	return ""
}

// isPkgSel reports whether e is pkg.name (pkg being a package's local name).
func isPkgSel(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || pkg == "" {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg && sel.Sel.Name == name
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func at(fset *token.FileSet, n ast.Node, format string, args ...any) string {
	return fmt.Sprintf("%s: %s", fset.Position(n.Pos()), fmt.Sprintf(format, args...))
}

// hostKeyRule: nothing names InsecureIgnoreHostKey, and every ssh.ClientConfig is a literal
// that sets a HostKeyCallback (not nil).
func hostKeyRule(fset *token.FileSet, _ string, f *ast.File) []string {
	var bad []string
	ssh := importName(f, sshPkg, "ssh")
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.Ident:
			if n.Name == "InsecureIgnoreHostKey" {
				bad = append(bad, at(fset, n, "uses InsecureIgnoreHostKey"))
			}
		case *ast.CompositeLit:
			if !isPkgSel(n.Type, ssh, "ClientConfig") {
				return true
			}
			pinned := false
			for _, el := range n.Elts {
				kv, ok := el.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				key, ok := kv.Key.(*ast.Ident)
				if ok && key.Name == "HostKeyCallback" {
					nilValue := false
					if id, ok := kv.Value.(*ast.Ident); ok && id.Name == "nil" {
						nilValue = true
					}
					pinned = !nilValue
				}
			}
			if !pinned {
				bad = append(bad, at(fset, n, "ssh.ClientConfig without a HostKeyCallback"))
			}
		case *ast.CallExpr:
			if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "new" && len(n.Args) == 1 && isPkgSel(n.Args[0], ssh, "ClientConfig") {
				bad = append(bad, at(fset, n, "new(ssh.ClientConfig) has no HostKeyCallback"))
			}
		case *ast.ValueSpec:
			if n.Type != nil && isPkgSel(n.Type, ssh, "ClientConfig") {
				bad = append(bad, at(fset, n, "ssh.ClientConfig declared without a literal setting HostKeyCallback"))
			}
		}
		return true
	})
	return bad
}

// libvirtConnectFile is the one file that opens libvirt connections (Connect).
const libvirtConnectFile = "vm/libvirt.go"

// libvirtRule: only vm/libvirt.go dials libvirt (go-libvirt's dialers and socket packages, its
// constructors, ConnectToURI, the daemon's socket path), nothing runs virsh, and every call of
// vm.Connect passes the configured URI (an expression ending in .VM.URI).
func libvirtRule(fset *token.FileSet, rel string, f *ast.File) []string {
	if rel == libvirtConnectFile {
		return nil
	}
	var bad []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if strings.HasPrefix(p, libvirtPkg+"/socket") {
			bad = append(bad, at(fset, imp, "imports %s: only %s dials libvirt", p, libvirtConnectFile))
		}
	}
	lv := importName(f, libvirtPkg, "libvirt")
	vmName := importName(f, "github.com/kmodvm/kmodvm/vm", "vm")
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			switch {
			case n.Sel.Name == "ConnectToURI" || n.Sel.Name == "NewWithDialer":
				bad = append(bad, at(fset, n, "calls %s: only %s dials libvirt", n.Sel.Name, libvirtConnectFile))
			case isPkgSel(n, lv, "New"):
				bad = append(bad, at(fset, n, "calls libvirt.New: only %s dials libvirt", libvirtConnectFile))
			}
		case *ast.BasicLit:
			if s, ok := stringLit(n); ok && (strings.Contains(s, "libvirt-sock") || s == "virsh") {
				bad = append(bad, at(fset, n, "names %q: libvirt is reached through vm.Connect only", s))
			}
		case *ast.CallExpr:
			if !isPkgSel(n.Fun, vmName, "Connect") {
				return true
			}
			uri := "?"
			if len(n.Args) >= 2 { // Connect(ctx, uri, log)
				uri = exprString(n.Args[1])
			}
			if !strings.HasSuffix(uri, ".VM.URI") {
				bad = append(bad, at(fset, n, "calls vm.Connect with %s, not the configured vm.uri", uri))
			}
		}
		return true
	})
	return bad
}

// exprString renders a selector chain ("a.cfg.VM.URI"); other expressions as "?".
func exprString(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return exprString(e.X) + "." + e.Sel.Name
	}
	return "?"
}

// execProgram is the program a call of exec.Command or exec.CommandContext (ex being the
// file's name for os/exec) runs, when it is a string literal.
func execProgram(call *ast.CallExpr, ex string) (string, bool) {
	prog := -1
	switch {
	case isPkgSel(call.Fun, ex, "Command"):
		prog = 0
	case isPkgSel(call.Fun, ex, "CommandContext"):
		prog = 1
	}
	if prog < 0 || prog >= len(call.Args) {
		return "", false
	}
	return stringLit(call.Args[prog])
}

var shells = []string{"sh", "bash", "dash", "/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash"}

// hostShellRule: no command on the host goes through a shell: exec.Command and
// exec.CommandContext never run a shell, and no argument list holds a shell followed by "-c"
// (as in a bwrap argv).
func hostShellRule(fset *token.FileSet, _ string, f *ast.File) []string {
	var bad []string
	ex := importName(f, execPkg, "exec")
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		if s, ok := execProgram(call, ex); ok && slices.Contains(shells, s) {
			bad = append(bad, at(fset, call, "runs %s on the host", s))
		}
		for i := 0; i+1 < len(call.Args); i++ {
			s, ok1 := stringLit(call.Args[i])
			c, ok2 := stringLit(call.Args[i+1])
			if ok1 && ok2 && slices.Contains(shells, s) && c == "-c" {
				bad = append(bad, at(fset, call, "passes a command line to %s -c", s))
			}
		}
		return true
	})
	return bad
}

// repoRoot is the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

type sourceFile struct {
	rel  string // slash-separated, from the repository root
	test bool   // a _test.go file
	file *ast.File
}

// repoFiles parses every .go file of the repository (testdata and dot directories left out).
func repoFiles(t *testing.T, fset *token.FileSet) []sourceFile {
	t.Helper()
	root := repoRoot(t)
	var files []sourceFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		files = append(files, sourceFile{rel: filepath.ToSlash(rel), test: strings.HasSuffix(p, "_test.go"), file: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d Go files under %s; the walk is broken", len(files), root)
	}
	return files
}

func TestSourceSecurityRules(t *testing.T) {
	fset := token.NewFileSet()
	files := repoFiles(t, fset)
	tests := []struct {
		name string
		rule rule
		// applies says which files the rule holds for.
		applies func(sourceFile) bool
	}{
		{"host key always verified", hostKeyRule, func(sourceFile) bool { return true }},
		// Tests may run virsh and fake libvirt; the product may not.
		{"libvirt only through vm.Connect", libvirtRule, func(f sourceFile) bool { return !f.test }},
		// vm/sshtest stands in for the guest's sshd, which does run commands with sh -c.
		{"no shell on the host", hostShellRule, func(f sourceFile) bool {
			return !f.test && !strings.HasPrefix(f.rel, "vm/sshtest/")
		}},
		{"tools found through hosttool", toolLookupRule, toolLookupApplies},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checked := 0
			for _, f := range files {
				if !tt.applies(f) {
					continue
				}
				checked++
				for _, b := range tt.rule(fset, f.rel, f.file) {
					t.Error(b)
				}
			}
			t.Logf("%d files checked", checked)
		})
	}
}

// TestSourceRulesFindViolations runs each rule on sources that break it (and on ones that do
// not), so a rule that silently matched nothing would be caught.
func TestSourceRulesFindViolations(t *testing.T) {
	tests := []struct {
		name string
		rule rule
		rel  string
		src  string
		want []string // substrings of the findings, in order; none for a clean source
	}{
		{"insecure callback", hostKeyRule, "x.go", `package x
import "golang.org/x/crypto/ssh"
var cb = ssh.InsecureIgnoreHostKey()`, []string{"uses InsecureIgnoreHostKey"}},
		{"renamed import, no callback", hostKeyRule, "x.go", `package x
import gossh "golang.org/x/crypto/ssh"
var c = &gossh.ClientConfig{User: "root"}`, []string{"without a HostKeyCallback"}},
		{"nil callback", hostKeyRule, "x.go", `package x
import "golang.org/x/crypto/ssh"
var c = ssh.ClientConfig{HostKeyCallback: nil}`, []string{"without a HostKeyCallback"}},
		{"new and var", hostKeyRule, "x.go", `package x
import "golang.org/x/crypto/ssh"
var c ssh.ClientConfig
var d = new(ssh.ClientConfig)`, []string{"declared without a literal", "new(ssh.ClientConfig)"}},
		{"pinned", hostKeyRule, "x.go", `package x
import "golang.org/x/crypto/ssh"
var c = &ssh.ClientConfig{HostKeyCallback: ssh.FixedHostKey(nil)}`, nil},

		{"dialer import", libvirtRule, "cmd/x.go", `package x
import "github.com/digitalocean/go-libvirt/socket/dialers"
var d = dialers.NewLocal()`, []string{"imports github.com/digitalocean/go-libvirt/socket/dialers"}},
		{"own connection", libvirtRule, "cmd/x.go", `package x
import lv "github.com/digitalocean/go-libvirt"
func f() { l := lv.NewWithDialer(nil); l.ConnectToURI(lv.QEMUSystem); lv.New(nil) }`,
			[]string{"calls NewWithDialer", "calls ConnectToURI", "calls libvirt.New"}},
		{"socket path and virsh", libvirtRule, "cmd/x.go", `package x
import "os/exec"
var s = "/var/run/libvirt/libvirt-sock"
var c = exec.Command("virsh", "list")`, []string{`names "/var/run/libvirt/libvirt-sock"`, `names "virsh"`}},
		{"vm.Connect with another URI", libvirtRule, "cmd/x.go", `package x
import "github.com/kmodvm/kmodvm/vm"
func f() { vm.Connect(ctx, "qemu:///system", log); vm.Connect(ctx, a.cfg.VM.URI, log) }`, []string{"calls vm.Connect with ?"}},
		{"the connect file itself", libvirtRule, libvirtConnectFile, `package vm
import "github.com/digitalocean/go-libvirt/socket/dialers"
var s = "/var/run/libvirt/libvirt-sock"`, nil},

		{"exec of a shell", hostShellRule, "x.go", `package x
import "os/exec"
var a = exec.Command("/bin/sh", "-c", "make")
var b = exec.CommandContext(ctx, "bash", "script")`, []string{"runs /bin/sh", "passes a command line to /bin/sh -c", "runs bash"}},
		{"shell in an argv", hostShellRule, "x.go", `package x
var c = root.Command(ctx, opt, "sh", "-c", line)`, []string{"passes a command line to sh -c"}},
		{"argv without a shell", hostShellRule, "x.go", `package x
import "os/exec"
var c = exec.Command("make", "-C", dir, "M="+dir)`, nil},

		{"LookPath", toolLookupRule, "x.go", `package x
import "os/exec"
func f() { p, _ := exec.LookPath("qemu-img"); _ = p }`, []string{"calls exec.LookPath"}},
		{"LookPath renamed, as a value", toolLookupRule, "x.go", `package x
import osexec "os/exec"
var find = osexec.LookPath`, []string{"calls exec.LookPath"}},
		{"known tool by bare name", toolLookupRule, "x.go", `package x
import "os/exec"
var a = exec.Command("mkfs.ext4", "-q")
var b = exec.CommandContext(ctx, "newuidmap", "1")`, []string{"runs mkfs.ext4 found in PATH", "runs newuidmap found in PATH"}},
		{"tool found first, or unknown to hosttool", toolLookupRule, "x.go", `package x
import "os/exec"
var a = exec.Command(path, "-q")
var b = exec.Command("/usr/sbin/mkfs.ext4")
var c = exec.CommandContext(ctx, "git", "status")
func LookPath() {}
var d = LookPath`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, tt.rel, tt.src, parser.SkipObjectResolution)
			if err != nil {
				t.Fatal(err)
			}
			got := tt.rule(fset, tt.rel, f)
			if len(got) != len(tt.want) {
				t.Fatalf("findings %q, want %d matching %q", got, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("finding %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}
