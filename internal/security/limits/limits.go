// Package limits bounds what one xDS client can make the server hold or
// do: the size of a request, the resource names in it, streams per
// connection, time to finish a TLS handshake, header sizes, and the REST
// server's timeouts. Default holds the values xdsbridge serves with;
// GRPCServerOptions, StreamInterceptor and RESTServer apply them.
package limits

import (
	"net/http"
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits are the bounds one server applies. The zero value of a field
// means its default.
type Limits struct {
	// RequestBytes bounds one discovery request: a gRPC message
	// received, and a REST body. A request is a node and resource names;
	// 4 MiB (gRPC's own default) is far above any real one. Over it, gRPC
	// ends the stream with ResourceExhausted, REST answers 413.
	RequestBytes int
	// ResourceNames bounds the names in one streamed request
	// (resource_names, or resource_names_subscribe plus
	// resource_names_unsubscribe): each subscribed name costs a watch.
	// Envoy asks for one name per cluster in EDS, so this is the largest
	// mesh one client can follow. Over it, the stream ends with
	// ResourceExhausted.
	ResourceNames int
	// ConcurrentStreams bounds streams per gRPC connection
	// (SETTINGS_MAX_CONCURRENT_STREAMS). Envoy opens one (ADS) to one per
	// subscription, a gRPC client one per server. A stream over it is
	// refused (RST_STREAM REFUSED_STREAM); gRPC and Envoy clients wait
	// for a free one, or open another connection.
	ConcurrentStreams uint32
	// HandshakeTimeout bounds a new connection's TLS and HTTP/2
	// handshake (gRPC), so that silent connections cannot pile up; the
	// REST server's ReadHeaderTimeout bounds its TLS handshake.
	HandshakeTimeout time.Duration
	// HeaderListSize bounds a gRPC request's headers (metadata).
	HeaderListSize uint32

	// The REST server's http.Server fields.

	// RESTReadHeaderTimeout is http.Server.ReadHeaderTimeout.
	RESTReadHeaderTimeout time.Duration
	// RESTReadTimeout is http.Server.ReadTimeout: headers and body.
	RESTReadTimeout time.Duration
	// RESTWriteTimeout is http.Server.WriteTimeout: the whole response.
	RESTWriteTimeout time.Duration
	// RESTIdleTimeout is http.Server.IdleTimeout between requests of a
	// kept-alive connection.
	RESTIdleTimeout time.Duration
	// RESTMaxHeaderBytes is http.Server.MaxHeaderBytes.
	RESTMaxHeaderBytes int
}

// Default returns the limits xdsbridge serves with.
func Default() Limits {
	return Limits{
		RequestBytes:          4 << 20,
		ResourceNames:         100_000,
		ConcurrentStreams:     1000,
		HandshakeTimeout:      10 * time.Second,
		HeaderListSize:        64 << 10,
		RESTReadHeaderTimeout: 10 * time.Second,
		RESTReadTimeout:       30 * time.Second,
		RESTWriteTimeout:      60 * time.Second,
		RESTIdleTimeout:       2 * time.Minute,
		RESTMaxHeaderBytes:    64 << 10,
	}
}

// OrDefault returns l with every zero field set to its default.
func (l Limits) OrDefault() Limits {
	d := Default()
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	if l.RequestBytes == 0 {
		l.RequestBytes = d.RequestBytes
	}
	if l.ResourceNames == 0 {
		l.ResourceNames = d.ResourceNames
	}
	if l.ConcurrentStreams == 0 {
		l.ConcurrentStreams = d.ConcurrentStreams
	}
	if l.HeaderListSize == 0 {
		l.HeaderListSize = d.HeaderListSize
	}
	if l.RESTMaxHeaderBytes == 0 {
		l.RESTMaxHeaderBytes = d.RESTMaxHeaderBytes
	}
	set(&l.HandshakeTimeout, d.HandshakeTimeout)
	set(&l.RESTReadHeaderTimeout, d.RESTReadHeaderTimeout)
	set(&l.RESTReadTimeout, d.RESTReadTimeout)
	set(&l.RESTWriteTimeout, d.RESTWriteTimeout)
	set(&l.RESTIdleTimeout, d.RESTIdleTimeout)
	return l
}

// GRPCServerOptions apply the gRPC limits. Responses are not bounded
// here: a state of many clusters is large, and the client's own receive
// limit is what matters (gRPC clients default to 4 MiB; set
// max_receive_message_length, or Envoy's default, unlimited).
func (l Limits) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(l.RequestBytes),
		grpc.MaxConcurrentStreams(l.ConcurrentStreams),
		grpc.ConnectionTimeout(l.HandshakeTimeout),
		grpc.MaxHeaderListSize(l.HeaderListSize),
	}
}

// RESTServer returns an http.Server for h with the REST limits. h bounds
// the body itself (RequestBytes).
func (l Limits) RESTServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.RESTReadHeaderTimeout,
		ReadTimeout:       l.RESTReadTimeout,
		WriteTimeout:      l.RESTWriteTimeout,
		IdleTimeout:       l.RESTIdleTimeout,
		MaxHeaderBytes:    l.RESTMaxHeaderBytes,
	}
}

// NameCount is the number of resource names a discovery request carries.
func NameCount(m any) int {
	switch r := m.(type) {
	case *discoveryv3.DiscoveryRequest:
		return len(r.GetResourceNames())
	case *discoveryv3.DeltaDiscoveryRequest:
		return len(r.GetResourceNamesSubscribe()) + len(r.GetResourceNamesUnsubscribe())
	case interface{ ResourceNameCount() int }:
		return r.ResourceNameCount()
	}
	return 0
}

// StreamInterceptor ends a stream, with codes.ResourceExhausted, on a
// discovery request of more than ResourceNames resource names; the
// request never reaches the handler. (A request over RequestBytes gets
// ResourceExhausted from gRPC itself.)
func (l Limits) StreamInterceptor() grpc.StreamServerInterceptor {
	maxNames := l.ResourceNames
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ls := &limitedStream{ServerStream: ss, max: maxNames}
		err := handler(srv, ls)
		// go-control-plane ends a stream whose Recv fails with no error
		// of its own; the limit is what the client must see.
		if err := ls.err.Load(); err != nil {
			return *err
		}
		return err
	}
}

type limitedStream struct {
	grpc.ServerStream
	max int
	err atomic.Pointer[error] // set by RecvMsg, read after the handler returned
}

func (ls *limitedStream) RecvMsg(m any) error {
	if err := ls.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if n := NameCount(m); n > ls.max {
		err := status.Errorf(codes.ResourceExhausted, "xds: request names %d resources, more than the %d allowed", n, ls.max)
		ls.err.Store(&err)
		return err
	}
	return nil
}
