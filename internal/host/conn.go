// Package host launches source plugins out of process, keeps them running,
// and hands what they send to the aggregator.
package host

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/xdsbridge/xdsbridge/internal/wire"
	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// Spec says how to run one plugin instance.
type Spec struct {
	// Name is the instance name from plugins.yaml.
	Name string
	// Command is the plugin's argv. Built-in plugins run the xdsbridge
	// binary itself with a hidden subcommand.
	Command []string
	// SHA256, when set, is the expected checksum of Command[0]: a binary
	// that does not match is not started.
	SHA256 []byte
	// Env is the plugin's whole environment, to which go-plugin adds its
	// handshake variables and Start the host's pid (wire.EnvHostPID).
	Env []string
	// Config is the plugin's config block, as YAML.
	Config []byte
	// BaseDir is plugins.yaml's directory.
	BaseDir string
}

// Conn is one running plugin process.
type Conn struct {
	spec   Spec
	client *plugin.Client
	rpc    sourcev1.SourceClient
	info   *sourcev1.InfoResponse
	// maxSilence is what the last applied Configure declared.
	maxSilence time.Duration
}

// Start launches the plugin, completes the handshake (with AutoMTLS), and
// checks that it speaks our API version.
func Start(ctx context.Context, spec Spec, logger *slog.Logger) (*Conn, error) {
	if len(spec.Command) == 0 {
		return nil, fmt.Errorf("plugin %q: no command", spec.Name)
	}
	cmd := exec.Command(spec.Command[0], spec.Command[1:]...)
	cmd.Env = append(slices.Clip(spec.Env), fmt.Sprintf("%s=%d", wire.EnvHostPID, os.Getpid()))
	setParentDeathSignal(cmd)
	stderr := &tailBuffer{max: 2048}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		Plugins:          plugin.PluginSet{wire.PluginName: &wire.GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           newHCLogAdapter(logger),
		Stderr:           stderr, // also logged line by line through Logger
		SkipHostEnv:      true,
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(wire.MaxMessageSize),
			grpc.MaxCallSendMsgSize(wire.MaxMessageSize),
		)},
	}
	if dl, ok := ctx.Deadline(); ok {
		cfg.StartTimeout = max(time.Until(dl), time.Millisecond) // bounds the handshake too
	}
	if len(spec.SHA256) > 0 {
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: spec.SHA256, Hash: sha256.New()}
	}
	client := plugin.NewClient(cfg)
	c := &Conn{spec: spec, client: client}
	if err := c.connect(ctx); err != nil {
		client.Kill()
		if tail := stderr.String(); tail != "" {
			return nil, fmt.Errorf("plugin %q: %w; its last output: %s", spec.Name, err, tail)
		}
		return nil, fmt.Errorf("plugin %q: %w", spec.Name, err)
	}
	return c, nil
}

func (c *Conn) connect(ctx context.Context) error {
	proto, err := c.client.Client()
	if err != nil {
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return fmt.Errorf("binary %s does not match its configured sha256: refusing to start it", c.spec.Command[0])
		}
		return fmt.Errorf("start %s: %w", c.spec.Command[0], err)
	}
	raw, err := proto.Dispense(wire.PluginName)
	if err != nil {
		return fmt.Errorf("dispense: %w", err)
	}
	c.rpc = raw.(sourcev1.SourceClient)
	info, err := c.rpc.Info(ctx, &sourcev1.InfoRequest{})
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	if !slices.Contains(info.GetApiVersions(), wire.APIVersion) {
		return fmt.Errorf("plugin %s %s speaks source API versions %v; this xdsbridge speaks %d",
			info.GetName(), info.GetVersion(), info.GetApiVersions(), wire.APIVersion)
	}
	c.info = info
	return nil
}

// Info is what the plugin said about itself.
func (c *Conn) Info() *sourcev1.InfoResponse { return c.info }

// Pid is the plugin process's id.
func (c *Conn) Pid() int {
	if rc := c.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Configure hands the plugin its configuration. Problems with the
// configuration come back as field errors; err is for failures of the call.
func (c *Conn) Configure(ctx context.Context, validateOnly bool) ([]sdk.FieldError, error) {
	resp, err := c.rpc.Configure(ctx, &sourcev1.ConfigureRequest{
		Config:       c.spec.Config,
		Instance:     c.spec.Name,
		ApiVersion:   wire.APIVersion,
		BaseDir:      c.spec.BaseDir,
		ValidateOnly: validateOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("plugin %q: configure: %w", c.spec.Name, err)
	}
	var out []sdk.FieldError
	for _, e := range resp.GetErrors() {
		out = append(out, sdk.FieldError{Path: e.GetPath(), Message: e.GetMessage(), File: e.GetFile(), Line: int(e.GetLine())})
	}
	if !validateOnly && len(out) == 0 {
		c.maxSilence = max(resp.GetMaxSilence().AsDuration(), 0)
	}
	return out, nil
}

// MaxSilence is how long the configured source may go without sending
// anything (ConfigureResponse.max_silence); 0 means forever.
func (c *Conn) MaxSilence() time.Duration { return c.maxSilence }

// Watch streams the plugin's updates to fn, one complete update at a time,
// until ctx ends or the stream fails. It returns nil only when ctx ended.
func (c *Conn) Watch(ctx context.Context, fn func(sdk.Update)) error {
	stream, err := c.rpc.Watch(ctx, &sourcev1.WatchRequest{})
	if err != nil {
		return fmt.Errorf("plugin %q: watch: %w", c.spec.Name, err)
	}
	asm := wire.Assembler{Max: maxUpdateBytes}
	for {
		msg, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("plugin %q: watch stream ended", c.spec.Name)
			}
			return fmt.Errorf("plugin %q: watch: %w", c.spec.Name, err)
		}
		u, err := asm.Add(msg)
		if err != nil {
			return fmt.Errorf("plugin %q: %w", c.spec.Name, err)
		}
		if u != nil {
			fn(fromProto(u))
		}
	}
}

// maxUpdateBytes bounds one reassembled update from a plugin.
const maxUpdateBytes = 1 << 30

// Ping checks that the plugin process answers.
func (c *Conn) Ping() error {
	proto, err := c.client.Client()
	if err != nil {
		return err
	}
	return proto.Ping()
}

// Exited reports whether the plugin process has exited.
func (c *Conn) Exited() bool { return c.client.Exited() }

// killGrace is how long a plugin gets to exit cleanly before SIGKILL.
const killGrace = 3 * time.Second

// Kill stops the plugin process: gracefully first, then by force. It
// returns once the process is gone. (go-plugin's own Kill waits for the
// plugin to answer a shutdown call, forever if the plugin hangs, so a plugin
// that does not exit within killGrace is sent SIGKILL.)
func (c *Conn) Kill() {
	done := make(chan struct{})
	go func() { c.client.Kill(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(killGrace):
	}
	if pid := c.Pid(); pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-done
}

// tailBuffer keeps the last max bytes written to it, for the error of a
// plugin that dies before the handshake: what it printed says why.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(strings.Fields(strings.ToValidUTF8(string(t.b), "?")), " ")
}
