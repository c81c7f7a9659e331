package wire

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
)

// GRPCPlugin is the go-plugin glue for both sides: the plugin sets Impl;
// the host uses the client it dispenses (a sourcev1.SourceClient).
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl sourcev1.SourceServer
}

// GRPCServer registers the plugin's service.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	sourcev1.RegisterSourceServer(s, p.Impl)
	return nil
}

// GRPCClient returns a sourcev1.SourceClient.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return sourcev1.NewSourceClient(c), nil
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)
