package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and places every problem on a
// line of the file.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/broken"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("testdata/fuzz.yaml", data)
		if err == nil {
			if cfg == nil {
				t.Fatal("Parse returned neither a Config nor an error")
			}
			return
		}
		var errs Errors
		if !errors.As(err, &errs) {
			t.Fatalf("error is %T, want Errors", err)
		}
		if len(errs) == 0 {
			t.Fatal("empty Errors")
		}
		for _, e := range errs {
			if e.Line < 1 {
				t.Errorf("error without a line: %v", e)
			}
		}
	})
}
