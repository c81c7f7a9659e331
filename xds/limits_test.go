package xds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xdsbridge/xdsbridge/internal/security/limits"
)

// sendAndRecv opens an ADS stream (SotW or delta) on cc, sends req and
// returns how the stream ended, or a DeadlineExceeded status when it
// stayed open for a second.
func sendAndRecv(t *testing.T, cc *grpc.ClientConn, req any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	client := discovery.NewAggregatedDiscoveryServiceClient(cc)
	switch req := req.(type) {
	case *discovery.DiscoveryRequest:
		st, err := client.StreamAggregatedResources(ctx)
		if err != nil {
			return err
		}
		return sendThenDrain(st, req)
	case *discovery.DeltaDiscoveryRequest:
		st, err := client.DeltaAggregatedResources(ctx)
		if err != nil {
			return err
		}
		return sendThenDrain(st, req)
	}
	t.Fatalf("request of type %T", req)
	return nil
}

// sendThenDrain sends req on st and receives until the stream ends.
func sendThenDrain[Req, Resp any](st interface {
	Send(Req) error
	Recv() (Resp, error)
}, req Req) error {
	if err := st.Send(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	for {
		if _, err := st.Recv(); err != nil {
			return err
		}
	}
}

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("c-%06d", i)
	}
	return out
}

// The server refuses a request naming more resources than the cap, or
// larger than the size cap, ending the stream with ResourceExhausted and
// a message that says which; a request within both stays open.
func TestLimitsRequests(t *testing.T) {
	node := &corev3.Node{Id: "limits"}
	small := startEnv(t, Options{Limits: limits.Limits{ResourceNames: 3, RequestBytes: 64 << 10}})
	def := startEnv(t, Options{})
	maxNames := limits.Default().ResourceNames
	tests := []struct {
		name string
		e    *env
		req  any
		code codes.Code // DeadlineExceeded: the stream stayed open
		says string
	}{
		{"sotw at the names cap", small, &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: names(3)}, codes.DeadlineExceeded, ""},
		{"sotw over the names cap", small, &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: names(4)}, codes.ResourceExhausted, "request names 4 resources, more than the 3 allowed"},
		{"delta over the names cap", small, &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNamesSubscribe: names(2), ResourceNamesUnsubscribe: names(2)}, codes.ResourceExhausted, "request names 4 resources, more than the 3 allowed"},
		{"over the size cap", small, &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: []string{strings.Repeat("x", 64<<10)}}, codes.ResourceExhausted, "larger than max (65"},
		{"over the default names cap", def, &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: names(maxNames + 1)}, codes.ResourceExhausted, fmt.Sprintf("more than the %d allowed", maxNames)},
		{"over the default size cap", def, &discovery.DiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResourceNames: []string{strings.Repeat("x", 4<<20)}}, codes.ResourceExhausted, "larger than max (4194"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc := tt.e.dial(grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64 << 20)))
			err := sendAndRecv(t, cc, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.says) {
				t.Fatalf("stream ended with %v, want %v saying %q", err, tt.code, tt.says)
			}
		})
	}
	// The REST body cap is the same size cap.
	body := `{"node": {"id": "limits"}, "version_info": "` + strings.Repeat("x", 64<<10) + `"}`
	resp, err := http.Post("http://"+small.restAddr+"/v3/discovery:clusters", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), "larger than 65536 bytes") {
		t.Errorf("REST body over the size cap: %d %q, want 413 saying it is larger than 65536 bytes", resp.StatusCode, msg)
	}
}

// h2Conn is a raw HTTP/2 client connection, to open streams without a
// client library's own stream limit.
type h2Conn struct {
	net.Conn
	fr *http2.Framer
}

func dialH2(t *testing.T, addr string) *h2Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &h2Conn{Conn: conn, fr: http2.NewFramer(conn, conn)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c
}

// openADS opens stream id as an ADS stream with extra headers, and sends
// nothing on it.
func (c *h2Conn) openADS(t *testing.T, id uint32, extra ...hpack.HeaderField) {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"}, {Name: ":authority", Value: "xds"},
		{Name: ":path", Value: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"},
		{Name: "content-type", Value: "application/grpc"}, {Name: "te", Value: "trailers"},
	}, extra...) {
		_ = enc.WriteField(f)
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
}

// resets reads frames for d, acknowledging SETTINGS, and returns the
// streams the server reset, with the code, and the server's
// SETTINGS_MAX_CONCURRENT_STREAMS.
func (c *h2Conn) resets(t *testing.T, d time.Duration) (map[uint32]http2.ErrCode, uint32) {
	t.Helper()
	out := map[uint32]http2.ErrCode{}
	var maxStreams uint32
	_ = c.SetReadDeadline(time.Now().Add(d))
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return out, maxStreams
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				maxStreams = v
			}
			if !f.IsAck() {
				_ = c.fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame:
			out[f.StreamID] = f.ErrCode
		}
	}
}

// A connection may hold the cap's streams; the next one is refused
// (REFUSED_STREAM), and the server announces the cap in its SETTINGS.
func TestLimitsStreamsPerConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts limits.Limits
		cap  uint32
	}{
		{"set", limits.Limits{ConcurrentStreams: 4}, 4},
		{"default", limits.Limits{}, limits.Default().ConcurrentStreams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEnv(t, Options{Limits: tc.opts})
			c := dialH2(t, e.grpcAddr)
			for i := range tc.cap + 1 {
				c.openADS(t, 2*i+1)
			}
			resets, announced := c.resets(t, 2*time.Second)
			if announced != tc.cap {
				t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", announced, tc.cap)
			}
			over := 2*tc.cap + 1
			if code, ok := resets[over]; !ok || code != http2.ErrCodeRefusedStream {
				t.Errorf("stream %d (one over the cap of %d) not refused: resets %v", over, tc.cap, resets)
			}
			if len(resets) != 1 {
				t.Errorf("streams within the cap were reset: %v", resets)
			}
		})
	}
}

// Headers over the cap reset the stream; the connection stays. (One
// header field larger than the whole cap ends the connection: HPACK
// refuses the string.)
func TestLimitsHeaderListSize(t *testing.T) {
	e := startEnv(t, Options{Limits: limits.Limits{HeaderListSize: 1 << 10}})
	c := dialH2(t, e.grpcAddr)
	var big []hpack.HeaderField
	for i := range 4 {
		big = append(big, hpack.HeaderField{Name: fmt.Sprintf("x-big-%d", i), Value: strings.Repeat("x", 512)})
	}
	c.openADS(t, 1, big...)
	c.openADS(t, 3)
	resets, _ := c.resets(t, time.Second)
	if code, ok := resets[1]; !ok || code != http2.ErrCodeFrameSize {
		t.Errorf("a stream with 2 KiB of headers over a 1 KiB cap was not reset: %v", resets)
	}
	if _, ok := resets[3]; ok {
		t.Errorf("a stream with small headers was reset: %v", resets)
	}
}

// A connection that does not finish its handshake (here: sends nothing,
// not even the HTTP/2 preface) is closed after the handshake timeout.
func TestLimitsHandshakeTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	e := startEnv(t, Options{Limits: limits.Limits{HandshakeTimeout: timeout}})
	conn, err := net.DialTimeout("tcp", e.grpcAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(10 * time.Second))
	_, err = io.ReadAll(conn)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a silent connection was still open after %v (handshake timeout %v)", took, timeout)
	}
	if took < timeout*8/10 {
		t.Errorf("closed after %v, before the handshake timeout %v", took, timeout)
	}
	// One that handshakes stays open past the timeout.
	c := dialH2(t, e.grpcAddr)
	_ = c.SetReadDeadline(time.Now().Add(3 * timeout))
	for {
		_, err := c.fr.ReadFrame()
		if errors.As(err, &ne) && ne.Timeout() {
			break
		}
		if err != nil {
			t.Fatalf("a connection that sent its preface was closed: %v", err)
		}
	}
}
