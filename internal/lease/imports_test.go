package lease

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The lessor is pure: no IO, no network, no other cairn package. Its
// non-test files may import only these.
var allowedImports = map[string]bool{
	"errors": true, "fmt": true, "math": true, "slices": true, "sync": true, "time": true,
	"github.com/google/btree":             true,
	"go.etcd.io/etcd/api/v3/etcdserverpb": true,
}

func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowedImports[path] {
				t.Errorf("%s imports %q; package lease may import only %v", name, path, allowedImports)
			}
		}
	}
}
