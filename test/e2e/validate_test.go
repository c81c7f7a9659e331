package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidate runs `xdsbridge validate` on broken configurations and checks
// that every problem is reported at its file and line, including problems
// only a plugin can see (its config block, its own files).
func TestValidate(t *testing.T) {
	cases := []struct {
		name     string
		files    map[string]string
		wantExit int
		want     []string // substrings, each expected on some output line
	}{
		{
			name: "valid",
			files: map[string]string{
				"plugins.yaml":  staticPlugins,
				"clusters.yaml": clustersFile(map[string][]int{"a": {1001}}),
			},
			want: []string{"plugins.yaml: ok (1 plugins)"},
		},
		{
			name: "unknown top-level key and bad address",
			files: map[string]string{
				"plugins.yaml":  "xds:\n  grpc_address: nonsense\nadmn:\n  address: 127.0.0.1:9902\n" + staticPlugins,
				"clusters.yaml": clustersFile(map[string][]int{"a": {1001}}),
			},
			wantExit: 1,
			want:     []string{"plugins.yaml:2: ", "plugins.yaml:3: "},
		},
		{
			name: "plugin config unknown key",
			files: map[string]string{
				"plugins.yaml":  "plugins:\n  - name: files\n    type: static\n    config:\n      path: clusters.yaml\n      pth: x\n",
				"clusters.yaml": clustersFile(map[string][]int{"a": {1001}}),
			},
			wantExit: 1,
			want:     []string{`plugins.yaml:6: plugin "files": config.pth: unknown key "pth"`},
		},
		{
			name: "static file errors",
			files: map[string]string{
				"plugins.yaml":  staticPlugins,
				"clusters.yaml": "clusters:\n  - name: a\n    endpoints:\n      - {address: 127.0.0.1, port: 70000}\n      - {address: not-an-ip, port: 80}\n",
			},
			wantExit: 1,
			want:     []string{"clusters.yaml:4: ", "clusters.yaml:5: "},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(bridgeBin, "validate", "--config", "plugins.yaml")
			cmd.Dir = dir
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.wantExit {
				t.Fatalf("exit %d, want %d; output:\n%s", code, tc.wantExit, out)
			}
			lines := strings.Split(string(out), "\n")
			for _, w := range tc.want {
				found := false
				for _, l := range lines {
					if strings.Contains(l, w) {
						found = true
					}
				}
				if !found {
					t.Errorf("no line contains %q; output:\n%s", w, out)
				}
			}
		})
	}
}
