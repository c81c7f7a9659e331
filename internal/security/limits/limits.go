// Package limits bounds what one xDS client can make the server hold or
// do: the size of a request, the resource names in it, streams per
// connection, time to finish a TLS handshake, header sizes, and the REST
// server's timeouts. The constants are the defaults; GRPCServerOptions,
// StreamInterceptor and the HTTP values apply them.
package limits

import (
	"sync/atomic"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// MaxRequestBytes bounds one discovery request: a gRPC message
	// received, and a REST body. A request is a node and resource names;
	// 4 MiB (gRPC's own default) is far above any real one.
	MaxRequestBytes = 4 << 20
	// MaxResourceNames bounds the names in one request (resource_names,
	// or resource_names_subscribe plus resource_names_unsubscribe): each
	// subscribed name costs a watch. Envoy asks for one name per cluster
	// in EDS, so this is the largest mesh one client can follow.
	MaxResourceNames = 100_000
	// MaxConcurrentStreams bounds streams per gRPC connection. Envoy
	// opens one (ADS) to five (one per type); a gRPC client one per
	// server.
	MaxConcurrentStreams = 1000
	// HandshakeTimeout bounds a new connection's TLS (and HTTP/2)
	// handshake, so that silent connections cannot pile up.
	HandshakeTimeout = 10 * time.Second
	// MaxHeaderListSize bounds a gRPC request's headers (metadata).
	MaxHeaderListSize = 64 << 10

	// The REST server's http.Server fields.

	// RESTReadHeaderTimeout is http.Server.ReadHeaderTimeout.
	RESTReadHeaderTimeout = 10 * time.Second
	// RESTReadTimeout is http.Server.ReadTimeout: headers and body.
	RESTReadTimeout = 30 * time.Second
	// RESTWriteTimeout is http.Server.WriteTimeout: the whole response.
	RESTWriteTimeout = 60 * time.Second
	// RESTIdleTimeout is http.Server.IdleTimeout between requests of a
	// kept-alive connection.
	RESTIdleTimeout = 2 * time.Minute
	// RESTMaxHeaderBytes is http.Server.MaxHeaderBytes.
	RESTMaxHeaderBytes = 64 << 10
)

// GRPCServerOptions apply the gRPC limits. Responses are not bounded
// here: a state of many clusters is large, and the client's own receive
// limit is what matters (gRPC clients default to 4 MiB; set
// max_receive_message_length, or Envoy's default, unlimited).
func GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.ConnectionTimeout(HandshakeTimeout),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
	}
}

// NameCount is the number of resource names a discovery request carries.
func NameCount(m any) int {
	switch r := m.(type) {
	case *discoveryv3.DiscoveryRequest:
		return len(r.GetResourceNames())
	case *discoveryv3.DeltaDiscoveryRequest:
		return len(r.GetResourceNamesSubscribe()) + len(r.GetResourceNamesUnsubscribe())
	}
	return 0
}

// StreamInterceptor ends a stream, with codes.ResourceExhausted, on a
// discovery request of more than maxNames resource names; the request
// never reaches the handler. (A request over MaxRequestBytes gets
// ResourceExhausted from gRPC itself.)
func StreamInterceptor(maxNames int) grpc.StreamServerInterceptor {
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
