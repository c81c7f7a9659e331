// Package synth is the benchmark's synthetic source plugin and the driver's
// end of its control channel.
//
// The plugin is an ordinary SDK plugin (sdk.Serve) run by the plugin host
// exactly as in production. Its configuration names a Unix socket on which
// the driver listens; the plugin dials it and reads workload Ops, applies
// each to its own workload.Model, and sends the resulting update: a full
// state for Init and Full, a change set otherwise. The driver applies the
// same Ops to its Model, so both know every endpoint.
package synth

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"

	"github.com/xdsbridge/xdsbridge/bench/workload"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// Config is the plugin's configuration block.
type Config struct {
	// Control is the Unix socket the driver listens on. Required.
	Control string `yaml:"control"`
}

// Plugin returns the synthetic source plugin, for sdk.Serve. gone is
// called if the driver goes away (its control socket closes) while the
// host still runs the plugin: a driver that died leaves no one to stop the
// plugin process, so gone should end it.
func Plugin(version string, gone func()) sdk.Plugin {
	return sdk.Plugin{
		Name:    "xdsbench-synth",
		Version: version,
		Configure: func(_ context.Context, req sdk.ConfigureRequest) (sdk.Source, error) {
			var cfg Config
			if err := sdk.DecodeConfig(req.Config, &cfg); err != nil {
				return nil, err
			}
			if cfg.Control == "" {
				var errs sdk.ConfigErrors
				errs.Add("control", "required: the driver's control socket")
				return nil, errs.Err()
			}
			return &Source{cfg: cfg, gone: gone}, nil
		},
	}
}

// Source is the synthetic source.
type Source struct {
	cfg  Config
	gone func()
}

// Run dials the driver and turns its Ops into updates until ctx ends or the
// driver hangs up; then it calls gone, if set, and fails.
func (s *Source) Run(ctx context.Context, up chan<- sdk.Update) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", s.cfg.Control)
	if err != nil {
		return fmt.Errorf("dial control socket: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	dec := gob.NewDecoder(bufio.NewReader(conn))
	var m workload.Model
	for {
		var op workload.Op
		if err := dec.Decode(&op); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				if s.gone != nil {
					s.gone()
				}
				return errors.New("the driver closed the control socket")
			}
			return fmt.Errorf("read op: %w", err)
		}
		u := Update(&m, op)
		select {
		case up <- u:
		case <-ctx.Done():
			return nil
		}
	}
}

// Update applies op to m and returns the update a source sends for it.
func Update(m *workload.Model, op workload.Op) sdk.Update {
	changed, removed := m.Apply(op)
	if op.Kind == workload.Init || op.Kind == workload.Full {
		refs := m.Refs()
		u := sdk.Update{Full: true, Clusters: make([]sdk.Cluster, len(refs)), Status: &sdk.Status{State: sdk.Connected}}
		for i, r := range refs {
			u.Clusters[i] = m.Cluster(r)
		}
		return u
	}
	u := sdk.Update{Clusters: make([]sdk.Cluster, len(changed))}
	for i, r := range changed {
		u.Clusters[i] = m.Cluster(r)
	}
	for _, r := range removed {
		u.RemovedClusters = append(u.RemovedClusters, r.Name())
	}
	return u
}

// Controller is the driver's end of the control channel: it listens on a
// Unix socket, accepts the plugin's connection and sends it Ops.
type Controller struct {
	ln   net.Listener
	path string

	mu   sync.Mutex
	conn net.Conn
	bw   *bufio.Writer
	enc  *gob.Encoder
}

// Listen listens on a socket in dir.
func Listen(ctx context.Context, dir string) (*Controller, error) {
	path := filepath.Join(dir, "control.sock")
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on control socket: %w", err)
	}
	return &Controller{ln: ln, path: path}, nil
}

// Path is the socket to put in the plugin's Config.
func (c *Controller) Path() string { return c.path }

// ConfigYAML is the plugin's configuration block.
func (c *Controller) ConfigYAML() []byte { return []byte(fmt.Sprintf("control: %q\n", c.path)) }

// Accept waits for the plugin to connect. A plugin that reconnects (after a
// restart) replaces the previous connection.
func (c *Controller) Accept(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.ln.Close() })
	defer stop()
	conn, err := c.ln.Accept()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("accept plugin connection: %w", ctx.Err())
		}
		return fmt.Errorf("accept plugin connection: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
	}
	c.conn = conn
	c.bw = bufio.NewWriterSize(conn, 64<<10)
	c.enc = gob.NewEncoder(c.bw)
	return nil
}

// Send hands op to the plugin.
func (c *Controller) Send(op workload.Op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.enc == nil {
		return errors.New("send op: plugin not connected")
	}
	if err := c.enc.Encode(&op); err != nil {
		return fmt.Errorf("send op: %w", err)
	}
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("send op: %w", err)
	}
	return nil
}

// Close closes the listener and the connection.
func (c *Controller) Close() error {
	err := c.ln.Close()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		c.conn.Close()
	}
	return err
}

var _ sdk.Source = (*Source)(nil)
