// Package lint holds tests about the source tree as a whole. TestImports is
// cairn's architecture written as a test: the packages follow the data flow
// of docs/architecture.md, and a package that imports one it must not fails
// the build.
//
// The rules (imports within a package's own folder tree are always allowed;
// test files are not checked):
//
//   - only internal/raftnode imports go.etcd.io/raft/v3 (and its packages
//     other than raftpb, which every package may use);
//   - internal/storage imports no other cairn package;
//   - internal/mvcc imports only internal/storage;
//   - internal/lease, internal/watch, internal/version and internal/config
//     import no cairn package but internal/version;
//   - internal/apply imports only internal/{mvcc,lease,membership,propose,storage};
//   - internal/api imports neither internal/server nor internal/raftnode,
//     nor anything under internal/apply/ (internal/apply itself is fine);
//   - nothing under internal/ imports cmd/;
//   - every package may import internal/failpoint (crash points for the
//     robustness tests), which imports no cairn package;
//   - cmd/* may import anything.
//
// A known violation that is being fixed can be listed in knownViolations
// with its reason; it is reported in the test log instead of failing.
package lint

import (
	"bufio"
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const (
	raftModule = "go.etcd.io/raft/v3"
	raftpb     = "go.etcd.io/raft/v3/raftpb"
	// failpointPkg may be imported by every package: its crash points
	// are one-line calls anywhere in the server.
	failpointPkg = "internal/failpoint"
)

// pkgImport is one import of one package: Pkg is a folder relative to the
// module root ("internal/api"), Import the import path as written. For an
// import of the module's own packages, Import is relative to the root too
// ("internal/server"), and Local is true.
type pkgImport struct {
	Pkg    string
	File   string // where it was found, relative to the module root
	Import string
	Local  bool
}

// rule is one architectural constraint. check returns "" when imp is
// allowed, or the rule's text.
type rule struct {
	name  string
	check func(imp pkgImport) string
}

// within reports whether pkg is dir or under it.
func within(pkg, dir string) bool {
	return pkg == dir || strings.HasPrefix(pkg, dir+"/")
}

// ownTree reports whether imp stays inside the top package folder of its
// importer: internal/watch/watchtest importing internal/watch, say.
func ownTree(imp pkgImport) bool {
	if !imp.Local {
		return false
	}
	top := topPackage(imp.Pkg)
	return within(imp.Import, top)
}

// topPackage is the package folder a rule is keyed on: internal/x for
// anything under internal/x, cmd/x for anything under cmd/x.
func topPackage(pkg string) string {
	parts := strings.Split(pkg, "/")
	if len(parts) >= 2 && (parts[0] == "internal" || parts[0] == "cmd") {
		return parts[0] + "/" + parts[1]
	}
	return pkg
}

// onlyLocal builds a rule for the packages in pkgs: their cairn imports
// must be in allowed (or in their own tree).
func onlyLocal(pkgs, allowed []string, text string) rule {
	return rule{
		name: "only " + strings.Join(allowed, ","),
		check: func(imp pkgImport) string {
			if !imp.Local || ownTree(imp) || imp.Import == failpointPkg {
				return ""
			}
			top := topPackage(imp.Pkg)
			for _, p := range pkgs {
				if top != p {
					continue
				}
				for _, a := range allowed {
					if imp.Import == a {
						return ""
					}
				}
				return text
			}
			return ""
		},
	}
}

var rules = []rule{
	{
		name: "raft",
		check: func(imp pkgImport) string {
			if imp.Import == raftpb || !(imp.Import == raftModule || strings.HasPrefix(imp.Import, raftModule+"/")) {
				return ""
			}
			if within(imp.Pkg, "internal/raftnode") || within(imp.Pkg, "cmd") {
				return ""
			}
			return "only internal/raftnode may import go.etcd.io/raft/v3 (go.etcd.io/raft/v3/raftpb is allowed everywhere)"
		},
	},
	onlyLocal([]string{failpointPkg}, nil,
		"internal/failpoint imports no other cairn package"),
	onlyLocal([]string{"internal/storage"}, nil,
		"internal/storage imports no other cairn package"),
	onlyLocal([]string{"internal/mvcc"}, []string{"internal/storage"},
		"internal/mvcc imports only internal/storage"),
	onlyLocal([]string{"internal/lease", "internal/watch", "internal/version", "internal/config"}, []string{"internal/version"},
		"internal/lease, internal/watch, internal/version and internal/config import no cairn package but internal/version"),
	onlyLocal([]string{"internal/apply"},
		[]string{"internal/mvcc", "internal/lease", "internal/membership", "internal/propose", "internal/storage"},
		"internal/apply imports only internal/mvcc, internal/lease, internal/membership, internal/propose and internal/storage"),
	{
		name: "api",
		check: func(imp pkgImport) string {
			if !imp.Local || !within(imp.Pkg, "internal/api") {
				return ""
			}
			switch {
			case within(imp.Import, "internal/server"), within(imp.Import, "internal/raftnode"),
				strings.HasPrefix(imp.Import, "internal/apply/"):
				return "internal/api must not import internal/server, internal/raftnode or the packages under internal/apply/ (internal/apply itself is allowed)"
			}
			return ""
		},
	},
	{
		name: "no cmd",
		check: func(imp pkgImport) string {
			if imp.Local && within(imp.Pkg, "internal") && within(imp.Import, "cmd") {
				return "nothing under internal/ imports cmd/"
			}
			return ""
		},
	},
}

// knownViolation is an import that breaks a rule today and is to be
// removed. Keyed by importing package and import path.
type knownViolation struct {
	Pkg, Import string
}

// knownViolations are reported with t.Log, not as failures. Each needs a
// reason and should disappear: delete the entry once the import is gone.
var knownViolations = map[knownViolation]string{}

// violation is a failed rule.
type violation struct {
	imp  pkgImport
	rule string
}

func (v violation) String() string {
	return fmt.Sprintf("%s (package %s) imports %q: %s", v.imp.File, v.imp.Pkg, v.display(), v.rule)
}

func (v violation) display() string {
	if v.imp.Local {
		return "<module>/" + v.imp.Import
	}
	return v.imp.Import
}

// check applies every rule to every import.
func check(imps []pkgImport) []violation {
	var out []violation
	for _, imp := range imps {
		for _, r := range rules {
			if text := r.check(imp); text != "" {
				out = append(out, violation{imp, text})
			}
		}
	}
	return out
}

// moduleRoot walks up from the working directory to go.mod and returns the
// folder and the module path.
func moduleRoot(t *testing.T) (dir, module string) {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := os.Open(filepath.Join(dir, "go.mod"))
		if err == nil {
			defer f.Close()
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
					return dir, strings.Trim(strings.TrimSpace(m), `"`)
				}
			}
			t.Fatalf("%s/go.mod has no module line", dir)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// sourceImports parses the imports of every non-test .go file under the
// given top folders of root.
func sourceImports(t *testing.T, root, module string, tops ...string) (imps []pkgImport, pkgs map[string]bool) {
	t.Helper()
	pkgs = map[string]bool{}
	fset := token.NewFileSet()
	for _, top := range tops {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if p != filepath.Join(root, top) && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
				return nil
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			rel = filepath.ToSlash(rel)
			f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			pkg := path.Dir(rel)
			pkgs[pkg] = true
			for _, spec := range f.Imports {
				ip, err := strconv.Unquote(spec.Path.Value)
				if err != nil {
					return fmt.Errorf("%s: %v", rel, err)
				}
				imp := pkgImport{Pkg: pkg, File: rel, Import: ip}
				if local, ok := strings.CutPrefix(ip, module+"/"); ok {
					imp.Import, imp.Local = local, true
				}
				imps = append(imps, imp)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return imps, pkgs
}

func TestImports(t *testing.T) {
	root, module := moduleRoot(t)
	imps, pkgs := sourceImports(t, root, module, "internal", "cmd")
	// Guard against a walk that found nothing (wrong root): the test would
	// pass without checking anything.
	for _, must := range []string{"cmd/cairn", "internal/raftnode", "internal/storage", "internal/api"} {
		if !pkgs[must] {
			t.Fatalf("package %s not found under %s; is the module root right?", must, root)
		}
	}

	seen := map[knownViolation]bool{}
	for _, v := range check(imps) {
		k := knownViolation{topPackage(v.imp.Pkg), v.imp.Import}
		if reason, ok := knownViolations[k]; ok {
			if !seen[k] {
				t.Logf("known violation, to fix: %s [%s]", v, reason)
			}
			seen[k] = true
			continue
		}
		t.Errorf("%s", v)
	}
	var stale []string
	for k := range knownViolations {
		if !seen[k] {
			stale = append(stale, fmt.Sprintf("%s -> %s", k.Pkg, k.Import))
		}
	}
	sort.Strings(stale)
	for _, s := range stale {
		t.Logf("knownViolations entry %s no longer occurs; delete it from internal/lint/lint_test.go", s)
	}
}

// TestRules checks each rule against imports that must pass and imports
// that must fail, so that a rule cannot silently stop matching.
func TestRules(t *testing.T) {
	local := func(pkg, imp string) pkgImport {
		return pkgImport{Pkg: pkg, File: pkg + "/x.go", Import: imp, Local: true}
	}
	ext := func(pkg, imp string) pkgImport {
		return pkgImport{Pkg: pkg, File: pkg + "/x.go", Import: imp}
	}
	allowed := []pkgImport{
		ext("internal/raftnode", raftModule),
		ext("internal/raftnode", raftModule+"/tracker"),
		ext("internal/apply", raftpb),
		ext("internal/storage", raftpb),
		ext("cmd/cairn", raftModule),
		ext("internal/storage", "github.com/cockroachdb/pebble/v2"),
		local("internal/mvcc", "internal/storage"),
		local("internal/lease", "internal/version"),
		local("internal/watch", "internal/version"),
		local("internal/watch/watchtest", "internal/watch"),
		local("internal/config", "internal/version"),
		local("internal/apply", "internal/mvcc"),
		local("internal/apply", "internal/lease"),
		local("internal/apply", "internal/membership"),
		local("internal/apply", "internal/propose"),
		local("internal/apply", "internal/storage"),
		local("internal/api", "internal/apply"),
		local("internal/api", "internal/mvcc"),
		local("internal/server", "internal/raftnode"),
		local("cmd/cairn", "internal/server"),
		local("cmd/cairnctl", "cmd/cairn/sub"),
		local("internal/storage", failpointPkg),
		local("internal/mvcc", failpointPkg),
		local("internal/watch", failpointPkg),
		local("internal/apply", failpointPkg),
	}
	for _, imp := range allowed {
		if vs := check([]pkgImport{imp}); len(vs) != 0 {
			t.Errorf("%s -> %s: want allowed, got %v", imp.Pkg, imp.Import, vs)
		}
	}
	forbidden := []pkgImport{
		ext("internal/api", raftModule),
		ext("internal/storage", raftModule),
		ext("internal/propose", raftModule+"/tracker"),
		local("internal/storage", "internal/version"),
		local("internal/mvcc", "internal/lease"),
		local("internal/mvcc/sub", "internal/watch"),
		local("internal/lease", "internal/storage"),
		local("internal/watch", "internal/mvcc"),
		local("internal/version", "internal/config"),
		local("internal/config", "internal/server"),
		local("internal/apply", "internal/watch"),
		local("internal/apply", "internal/raftnode"),
		local("internal/api", "internal/server"),
		local("internal/api", "internal/raftnode"),
		local("internal/api", "internal/apply/internal"),
		local("internal/server", "cmd/cairn"),
		local("internal/failpoint", "internal/storage"),
	}
	for _, imp := range forbidden {
		if vs := check([]pkgImport{imp}); len(vs) == 0 {
			t.Errorf("%s -> %s: want a violation, got none", imp.Pkg, imp.Import)
		}
	}
}
