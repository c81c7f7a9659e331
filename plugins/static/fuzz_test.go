package static

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseFile checks that parseFile never panics, and that it returns
// either a full state or problems that each have a line.
func FuzzParseFile(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
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
		upd, errs := parseFile("fuzz.yaml", data)
		if len(errs) == 0 {
			if !upd.Full {
				t.Fatal("no problems, but no full state either")
			}
			return
		}
		if upd.Full || upd.Clusters != nil || upd.Resources != nil {
			t.Fatal("problems and data at once")
		}
		for _, e := range errs {
			if e.File != "fuzz.yaml" || e.Line < 1 || e.Message == "" {
				t.Errorf("malformed error %#v", e)
			}
		}
	})
}
