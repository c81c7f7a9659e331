package limits_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdsbridge/xdsbridge/internal/security/limits"
)

// The shipped plugins.yaml and the README state the limits; they must
// state Default's values.
func TestDocumentedValues(t *testing.T) {
	d := limits.Default()
	mib := func(n int) string { return fmt.Sprintf("%d MiB", n>>20) }
	kib := func(n int) string { return fmt.Sprintf("%d KiB", n>>10) }
	dur := func(d time.Duration) string { // 2m0s: 2m
		if s := d.String(); strings.HasSuffix(s, "m0s") {
			return strings.TrimSuffix(s, "0s")
		}
		return d.String()
	}
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"plugins.yaml", []string{
			"up to " + mib(d.RequestBytes),
			fmt.Sprintf("up to %d resource names", d.ResourceNames),
			fmt.Sprintf("%d concurrent streams", d.ConcurrentStreams),
			kib(int(d.HeaderListSize)) + " of gRPC request headers",
			fmt.Sprintf("%s for a gRPC connection's TLS/HTTP2 handshake", dur(d.HandshakeTimeout)),
			fmt.Sprintf("REST: %s to read the headers, %s the\n# request, %s to write the response, %s idle, %s of headers",
				dur(d.RESTReadHeaderTimeout), dur(d.RESTReadTimeout), dur(d.RESTWriteTimeout), dur(d.RESTIdleTimeout), kib(d.RESTMaxHeaderBytes)),
		}},
		{"README.md", []string{
			"| " + mib(d.RequestBytes) + " |",
			fmt.Sprintf("| %s |", thousands(d.ResourceNames)),
			fmt.Sprintf("| %s |", thousands(int(d.ConcurrentStreams))),
			"| " + kib(int(d.HeaderListSize)) + " |",
			fmt.Sprintf("| %d s |", int(d.HandshakeTimeout.Seconds())),
			fmt.Sprintf("| %d s / %d s / %d s / %d min / %s |", int(d.RESTReadHeaderTimeout.Seconds()), int(d.RESTReadTimeout.Seconds()),
				int(d.RESTWriteTimeout.Seconds()), int(d.RESTIdleTimeout.Minutes()), kib(d.RESTMaxHeaderBytes)),
		}},
	} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s does not say %q", tc.file, w)
			}
		}
	}
}

// thousands writes n with commas: 100,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
