package deploy

import (
	"archive/tar"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// imageConfig is the part of `podman image inspect` the test reads.
type imageConfig struct {
	Config struct {
		User       string
		Entrypoint []string
		Cmd        []string
	}
}

// TestImage inspects the image `make image` built ($XDSBRIDGE_IMAGE): a
// non-root numeric user, the entrypoint, a static binary, CA certificates
// and a /tmp the plugins can put their sockets in; then it runs the binary
// taken out of the image on the host and serves the seed example to an xDS
// client. (Running the container itself needs cgroups, which a test sandbox
// may not have; the file system is what a container runtime would start.)
func TestImage(t *testing.T) {
	image := os.Getenv("XDSBRIDGE_IMAGE")
	if image == "" {
		missing(t, "no image to test: `make image`, then set $XDSBRIDGE_IMAGE (make test-deploy does both)")
	}
	podman := tool(t, "PODMAN", "podman")

	var inspected []imageConfig
	if err := json.Unmarshal(run(t, podman, "image", "inspect", image), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("podman image inspect %s: %v (%d images)", image, err, len(inspected))
	}
	cfg := inspected[0].Config
	if cfg.User != "65532:65532" {
		t.Errorf("user %q, want the numeric non-root 65532:65532 (Kubernetes' runAsNonRoot needs a number)", cfg.User)
	}
	const binPath = "/usr/local/bin/xdsbridge"
	if !slices.Equal(cfg.Entrypoint, []string{binPath}) {
		t.Errorf("entrypoint %q, want [%s]", cfg.Entrypoint, binPath)
	}
	if want := []string{"run", "--config", "/etc/xdsbridge/plugins.yaml"}; !slices.Equal(cfg.Cmd, want) {
		t.Errorf("cmd %q, want %q", cfg.Cmd, want)
	}

	// The file system of a container created (not started) from the image.
	cid := strings.TrimSpace(string(run(t, podman, "create", image)))
	t.Cleanup(func() { _ = exec.Command(podman, "rm", "--force", cid).Run() })
	export := filepath.Join(t.TempDir(), "rootfs.tar")
	run(t, podman, "export", "--output", export, cid)
	root := t.TempDir()
	modes := untar(t, export, root)

	want := map[string]fs.FileMode{
		"usr/local/bin/xdsbridge":           0o755,
		"etc/ssl/certs/ca-certificates.crt": 0o644,
		"etc/passwd":                        0o644,
		"etc/group":                         0o644,
		"tmp":                               fs.ModeDir | fs.ModeSticky | 0o777,
	}
	for name, mode := range want {
		got, ok := modes[name]
		if !ok {
			t.Errorf("image lacks /%s", name)
		} else if got != mode {
			t.Errorf("/%s: mode %v, want %v", name, got, mode)
		}
	}
	if passwd := string(readFile(t, filepath.Join(root, "etc", "passwd"))); !strings.Contains(passwd, ":65532:65532:") {
		t.Errorf("/etc/passwd has no entry for 65532:\n%s", passwd)
	}
	if certs := readFile(t, filepath.Join(root, "etc", "ssl", "certs", "ca-certificates.crt")); !strings.Contains(string(certs), "BEGIN CERTIFICATE") {
		t.Errorf("ca-certificates.crt holds no certificate")
	}

	bin := filepath.Join(root, binPath)
	if err := staticErr(bin); err != nil {
		t.Error(err)
	}

	// The binary from the image serves the seed example, its static plugin
	// run out of process as the same binary.
	b := serveSeed(t, bin)
	fetchSeed(t, dialADS(t, b.grpcAddr, "image-test"))
}

// untar extracts a tar file into dir and returns every entry's mode by its
// path (without a leading "./" or "/", directories without a trailing "/").
func untar(t *testing.T, file, dir string) map[string]fs.FileMode {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	modes := map[string]fs.FileMode{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return modes
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.Trim(strings.TrimPrefix(h.Name, "./"), "/")
		if name == "" || !filepath.IsLocal(name) {
			continue
		}
		modes[name] = h.FileInfo().Mode()
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			out, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, h.FileInfo().Mode().Perm())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(out, tr); err != nil {
				t.Fatal(err)
			}
			if err := out.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// staticErr says why bin is not a statically linked executable — one with
// no program interpreter (dynamic loader) and no shared libraries, as a
// scratch image has neither — or returns nil.
func staticErr(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			return fmt.Errorf("%s has a %v program header: it is dynamically linked (build with CGO_ENABLED=0)", bin, p.Type)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return err
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v", bin, libs)
	}
	return nil
}

// TestStaticErr: the check tells a dynamically linked program (the shell)
// from a static one (a Go program built with CGO_ENABLED=0).
func TestStaticErr(t *testing.T) {
	if err := staticErr("/bin/sh"); err == nil {
		t.Errorf("staticErr(/bin/sh) = nil, want an error: the shell is dynamically linked")
	}
	dir := t.TempDir()
	for name, content := range map[string]string{
		"go.mod":  "module static\n",
		"main.go": "package main\n\nimport \"net\"\n\nfunc main() { _, _ = net.LookupHost(\"localhost\") }\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "static")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	if err := staticErr(bin); err != nil {
		t.Errorf("a CGO_ENABLED=0 build: %v", err)
	}
}
