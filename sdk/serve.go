package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xdsbridge/xdsbridge/internal/wire"
	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
)

// Serve runs p as a plugin process and returns when the host is done with it.
// Call it from main. A binary started by hand, not by xdsbridge, prints a
// short explanation and exits with status 1.
//
// The process ends with its host: when it receives SIGTERM, or when the
// host that started it is gone (its parent changes, or the process the host
// named in the environment no longer exists), Serve cancels the running
// source's context, waits for Run to return (for a few seconds at most),
// and exits the process. SIGINT is ignored, so that Ctrl-C in a terminal
// reaches the host, which then stops its plugins itself.
func Serve(p Plugin) {
	logger := slog.New(NewPluginLogHandler(os.Stderr, slog.LevelDebug))
	srv := newServer(p, logger)

	sigterm := make(chan os.Signal, 1)
	signal.Notify(sigterm, syscall.SIGTERM)
	hostGone := make(chan string, 1)
	stopWatch := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stopWatch)
	wg.Go(func() { watchHost(stopWatch, hostGone) })
	wg.Go(func() {
		var why string
		select {
		case <-sigterm:
			why = "received SIGTERM"
		case why = <-hostGone:
			// Nobody reads stderr any more: a write to it must not kill
			// the process (SIGPIPE) before the source has stopped.
			signal.Ignore(syscall.SIGPIPE)
		case <-stopWatch:
			return
		}
		logger.Info("stopping the source and exiting: " + why)
		srv.stop(runGrace)
		os.Exit(0)
	})

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins: plugin.PluginSet{
			wire.PluginName: &wire.GRPCPlugin{Impl: srv},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(wire.MaxMessageSize), grpc.MaxSendMsgSize(wire.MaxMessageSize))
			return grpc.NewServer(opts...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Warn}),
	})
	// The host asked the plugin to shut down: let a running source finish.
	srv.stop(runGrace)
}

// NewPluginLogHandler returns a slog handler writing the JSON lines the
// plugin host reads from a plugin's stderr (hclog's format): the host logs
// each line at its level, tagged with the plugin's name.
func NewPluginLogHandler(w io.Writer, level slog.Leveler) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{} // the host stamps the line
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	})
}

// runGrace is how long Watch waits for Source.Run to return after the host
// cancels the stream.
const runGrace = 5 * time.Second

// server is the plugin side of proto/source/v1.
type server struct {
	sourcev1.UnimplementedSourceServer
	plugin Plugin
	logger *slog.Logger
	// done ends every Watch, present and future: the process is exiting.
	done     context.Context
	shutdown context.CancelFunc

	mu       sync.Mutex
	source   Source
	watching bool
	watchEnd chan struct{} // closed when the running Watch returns
}

func newServer(p Plugin, logger *slog.Logger) *server {
	done, shutdown := context.WithCancel(context.Background())
	return &server{plugin: p, logger: logger, done: done, shutdown: shutdown}
}

// stop cancels the running source, if any, and waits up to grace beyond
// runGrace for its Watch to return.
func (s *server) stop(grace time.Duration) {
	s.shutdown()
	s.mu.Lock()
	end := s.watchEnd
	s.mu.Unlock()
	if end == nil {
		return
	}
	t := time.NewTimer(grace + time.Second)
	defer t.Stop()
	select {
	case <-end:
	case <-t.C:
	}
}

func (s *server) Info(context.Context, *sourcev1.InfoRequest) (*sourcev1.InfoResponse, error) {
	return &sourcev1.InfoResponse{
		Name:        s.plugin.Name,
		Version:     s.plugin.Version,
		ApiVersions: []uint32{wire.APIVersion},
	}, nil
}

func (s *server) Configure(ctx context.Context, req *sourcev1.ConfigureRequest) (*sourcev1.ConfigureResponse, error) {
	if req.GetApiVersion() != wire.APIVersion {
		return nil, status.Errorf(codes.FailedPrecondition, "api version %d not supported (want %d)", req.GetApiVersion(), wire.APIVersion)
	}
	src, err := s.plugin.Configure(ctx, ConfigureRequest{
		Instance:     req.GetInstance(),
		Config:       req.GetConfig(),
		BaseDir:      req.GetBaseDir(),
		ValidateOnly: req.GetValidateOnly(),
		Logger:       s.logger, // the host tags every line with the instance name
	})
	if err != nil {
		return &sourcev1.ConfigureResponse{Errors: fieldErrorsToProto(err)}, nil
	}
	if src == nil {
		return nil, status.Error(codes.Internal, "plugin Configure returned no source and no error")
	}
	resp := &sourcev1.ConfigureResponse{}
	if !req.GetValidateOnly() { // a validate-only source is never run
		s.mu.Lock()
		s.source = src
		s.mu.Unlock()
		if l, ok := src.(Liveness); ok {
			if d := l.MaxSilence(); d > 0 {
				resp.MaxSilence = durationpb.New(d)
			}
		}
	}
	return resp, nil
}

func fieldErrorsToProto(err error) []*sourcev1.FieldError {
	var ces ConfigErrors
	if !errors.As(err, &ces) {
		var fe FieldError
		if errors.As(err, &fe) {
			ces = ConfigErrors{fe}
		} else {
			ces = ConfigErrors{{Message: err.Error()}}
		}
	}
	out := make([]*sourcev1.FieldError, len(ces))
	for i, e := range ces {
		out[i] = &sourcev1.FieldError{Path: e.Path, Message: e.Message, File: e.File, Line: uint32(max(e.Line, 0))}
	}
	return out
}

func (s *server) Watch(_ *sourcev1.WatchRequest, stream grpc.ServerStreamingServer[sourcev1.Update]) error {
	s.mu.Lock()
	src := s.source
	if src == nil {
		s.mu.Unlock()
		return status.Error(codes.FailedPrecondition, "watch before a successful configure")
	}
	if s.watching {
		s.mu.Unlock()
		return status.Error(codes.AlreadyExists, "a watch is already running")
	}
	s.watching = true
	end := make(chan struct{})
	s.watchEnd = end
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.watching = false
		s.mu.Unlock()
		close(end)
	}()

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	defer context.AfterFunc(s.done, cancel)()
	up := make(chan Update)
	runErr := make(chan error, 1)
	go func() { runErr <- src.Run(ctx, up) }()

	for {
		select {
		case <-ctx.Done():
			// Run should return now; a source that ignores ctx is left
			// behind after a grace period rather than holding the stream.
			select {
			case <-runErr:
			case <-time.After(runGrace):
			}
			return nil
		case err := <-runErr:
			if err == nil || ctx.Err() != nil {
				return nil
			}
			return status.Errorf(codes.Unknown, "source: %v", err)
		case u := <-up:
			msg, err := toProto(u)
			if err != nil {
				cancel()
				<-runErr
				return status.Errorf(codes.InvalidArgument, "source sent an update that cannot be encoded: %v", err)
			}
			for _, part := range wire.Split(msg) {
				if err := stream.Send(part); err != nil {
					cancel()
					<-runErr
					return fmt.Errorf("send update: %w", err)
				}
			}
		}
	}
}
