package vm

import (
	"go/ast"
	"go/token"
	"strings"
	"testing"

	"github.com/kmodvm/kmodvm/vm/hosttool"
)

// toolLookupRule: programs are found through hosttool.Find, which also looks in the sbin
// directories an ordinary user's PATH lacks. Nothing calls exec.LookPath, and no
// exec.Command names a tool hosttool knows by bare name (that is a PATH lookup too).
func toolLookupRule(fset *token.FileSet, _ string, f *ast.File) []string {
	var bad []string
	ex := importName(f, execPkg, "exec")
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SelectorExpr:
			if isPkgSel(n, ex, "LookPath") {
				bad = append(bad, at(fset, n, "calls exec.LookPath: use hosttool.Find"))
			}
		case *ast.CallExpr:
			if s, ok := execProgram(n, ex); ok && !strings.Contains(s, "/") && hosttool.Package(s) != "" {
				bad = append(bad, at(fset, n, "runs %s found in PATH: use hosttool.Find", s))
			}
		}
		return true
	})
	return bad
}

// toolLookupApplies: product code outside vm/hosttool.
func toolLookupApplies(f sourceFile) bool {
	return !f.test && !strings.HasPrefix(f.rel, "vm/hosttool/")
}

func TestToolLookupApplies(t *testing.T) {
	for rel, want := range map[string]bool{
		"vm/accel.go":              true,
		"vm/hosttool/hosttool.go":  false,
		"images/root.go":           true,
		"images/userns/userns.go":  true,
		"cmd/kmodvm/doctorhost.go": true,
		"provision/sandbox/x.go":   true,
	} {
		if got := toolLookupApplies(sourceFile{rel: rel}); got != want {
			t.Errorf("toolLookupApplies(%s) = %v, want %v", rel, got, want)
		}
	}
	if toolLookupApplies(sourceFile{rel: "vm/accel_test.go", test: true}) {
		t.Error("the rule applies to tests")
	}
}
