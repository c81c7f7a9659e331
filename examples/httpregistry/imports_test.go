package main

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImportsOnlySDK checks that the plugin needs nothing of xdsbridge but
// the SDK: its code imports the standard library and the sdk package, and
// its tests add sdktest and goleak.
func TestImportsOnlySDK(t *testing.T) {
	const module = "github.com/xdsbridge/xdsbridge/"
	allowed := map[string]bool{module + "sdk": true}
	allowedInTests := map[string]bool{module + "sdk": true, module + "sdk/sdktest": true, "go.uber.org/goleak": true}

	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files found: %v", err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		ok := allowed
		if strings.HasSuffix(name, "_test.go") {
			ok = allowedInTests
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			std := !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
			if !std && !ok[path] {
				t.Errorf("%s imports %s; a third-party plugin has only the SDK", fset.Position(imp.Pos()), path)
			}
		}
	}
}
