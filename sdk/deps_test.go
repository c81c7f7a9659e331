package sdk_test

import (
	"go/build"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestNoServerDeps checks that the SDK and the built-in plugins depend on
// nothing downstream of the plugin protocol: no package under sdk/ or
// plugins/, nor any package of this module they import directly or
// indirectly (tests included), is the aggregator, the translator, the xDS
// server or the wiring that joins them. A plugin binary then links none of
// it, and a third-party author imports only what a plugin needs.
func TestNoServerDeps(t *testing.T) {
	const module = "github.com/xdsbridge/xdsbridge"
	forbidden := func(path string) bool {
		for _, p := range []string{"xds", "aggregator", "internal/publish", "internal/bridge", "cmd"} {
			if path == module+"/"+p || strings.HasPrefix(path, module+"/"+p+"/") {
				return true
			}
		}
		return false
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}

	// imports maps a package of the module to its imports of the module;
	// withTests adds its test files' imports.
	imports := func(path string, withTests bool) []string {
		t.Helper()
		dir := filepath.Join(root, filepath.FromSlash(strings.TrimPrefix(path, module)))
		pkg, err := build.ImportDir(dir, 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		all := pkg.Imports
		if withTests {
			all = slices.Concat(all, pkg.TestImports, pkg.XTestImports)
		}
		var out []string
		for _, imp := range all {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				out = append(out, imp)
			}
		}
		return out
	}

	var starts []string
	for _, top := range []string{"sdk", "plugins"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			if _, err := build.ImportDir(p, 0); err != nil {
				return nil // no Go files here
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			starts = append(starts, module+"/"+filepath.ToSlash(rel))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(starts) < 5 {
		t.Fatalf("found only %v under sdk/ and plugins/", starts)
	}

	for _, start := range starts {
		// Breadth first, remembering how each package was reached.
		via := map[string]string{start: ""}
		queue := []string{start}
		for len(queue) > 0 {
			p := queue[0]
			queue = queue[1:]
			for _, imp := range imports(p, p == start) {
				if _, seen := via[imp]; seen {
					continue
				}
				via[imp] = p
				if forbidden(imp) {
					chain := []string{imp}
					for q := p; q != ""; q = via[q] {
						chain = append(chain, q)
					}
					slices.Reverse(chain)
					t.Errorf("%s depends on %s: %s", start, imp, strings.Join(chain, " → "))
					continue
				}
				queue = append(queue, imp)
			}
		}
	}
}
