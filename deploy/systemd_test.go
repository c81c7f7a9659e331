package deploy

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const unitFile = "systemd/xdsbridge.service"

// unitKeys reads a unit file's [Service] section: each key with every value
// it is given, in order.
func unitKeys(t *testing.T, data []byte) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: line %q has no =", unitFile, line)
			}
			keys[k] = append(keys[k], v)
		}
	}
	return keys
}

// TestSystemdUnit verifies the unit with systemd-analyze (any warning, such
// as an unknown key or a bad value, fails), checks its hardening, and that
// systemd's own exposure score for it stays low.
func TestSystemdUnit(t *testing.T) {
	analyze := tool(t, "SYSTEMD_ANALYZE", "systemd-analyze")
	data := readFile(t, unitFile)

	keys := unitKeys(t, data)
	for k, want := range map[string]string{
		"Type":                  "simple", // no sd_notify yet
		"DynamicUser":           "yes",
		"ProtectSystem":         "strict",
		"NoNewPrivileges":       "yes",
		"CapabilityBoundingSet": "",
		"PrivateTmp":            "yes", // go-plugin's sockets
	} {
		if v := keys[k]; len(v) != 1 || v[0] != want {
			t.Errorf("%s=%q, want %q", k, v, want)
		}
	}
	if _, ok := keys["ExecReload"]; ok {
		t.Errorf("ExecReload is set, but xdsbridge has no live reload")
	}
	const installed = "/usr/local/bin/xdsbridge"
	exec0 := keys["ExecStart"]
	if len(exec0) != 1 || !strings.HasPrefix(exec0[0], installed+" run --config ") {
		t.Fatalf("ExecStart=%q, want %s run --config FILE", exec0, installed)
	}

	// verify checks that ExecStart's program exists: point it at the binary
	// under test, and change nothing else.
	dir := t.TempDir()
	unit := filepath.Join(dir, "xdsbridge.service")
	abs, err := filepath.Abs(bridgeBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(unit, bytes.Replace(data, []byte("ExecStart="+installed+" "), []byte("ExecStart="+abs+" "), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	verify := func(path string) string {
		out, err := exec.Command(analyze, "verify", path).CombinedOutput()
		if err != nil {
			return err.Error() + ": " + string(out)
		}
		return strings.TrimSpace(string(out))
	}
	if out := verify(unit); out != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	// The check itself: a misspelt key is reported.
	bad := filepath.Join(t.TempDir(), "xdsbridge.service")
	if err := os.WriteFile(bad, bytes.Replace(readFile(t, unit), []byte("ProtectHome="), []byte("ProtectHom="), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := verify(bad); !strings.Contains(out, "ProtectHom") {
		t.Errorf("systemd-analyze verify did not report a misspelt key: %q", out)
	}

	out, err := exec.Command(analyze, "security", "--offline=true", unit).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no exposure level in\n%s", out)
	}
	// 0 is best, 10 worst; systemd calls up to 2.0 "OK" (and up to 1.0 "SAFE").
	if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 2.0 {
		t.Errorf("systemd-analyze security: exposure %.1f, want at most 2.0 (OK):\n%s", level, out)
	}
}
