package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/rpc"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/xdsbridge/xdsbridge/bench/workload"
)

// Pool is the driver's handle on a fleet, in this process (Local) or in
// another one (Spawn).
type Pool interface {
	// Reset stops every client and starts an empty fleet.
	Reset(opts Options) error
	Connect(target Target, kinds []Kind, clusters []workload.Ref) (first int32, err error)
	WaitSynced(ctx context.Context, from, to int32, timeout time.Duration) (SyncReport, error)
	Announce(evs []Event) error
	Wait(ctx context.Context, seqs []uint32, timeout time.Duration) (bool, error)
	Report(seqs []uint32) ([]EventReport, error)
	Churn(percent float64) error
	Counters() (Counters, error)
	// PID is the process the clients run in.
	PID() int
	// Close stops every client (and the fleet's process).
	Close() error
}

// Local is a Pool in this process.
type Local struct {
	logger *slog.Logger
	mu     sync.Mutex
	f      *Fleet
}

// NewLocal returns a Pool running its clients in this process.
func NewLocal(logger *slog.Logger) *Local {
	return &Local{logger: logger, f: New(Options{}, logger)}
}

func (l *Local) fleet() *Fleet {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

func (l *Local) Reset(opts Options) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.f.Close()
	l.f = New(opts, l.logger)
	return nil
}

func (l *Local) Connect(target Target, kinds []Kind, clusters []workload.Ref) (int32, error) {
	return l.fleet().Connect(target, kinds, clusters)
}

func (l *Local) WaitSynced(ctx context.Context, from, to int32, timeout time.Duration) (SyncReport, error) {
	return l.fleet().WaitSynced(ctx, from, to, timeout), nil
}

func (l *Local) Announce(evs []Event) error {
	l.fleet().Announce(evs)
	return nil
}

func (l *Local) Wait(ctx context.Context, seqs []uint32, timeout time.Duration) (bool, error) {
	return l.fleet().Wait(ctx, seqs, timeout), nil
}

func (l *Local) Report(seqs []uint32) ([]EventReport, error) { return l.fleet().Report(seqs), nil }

func (l *Local) Churn(percent float64) error {
	l.fleet().Churn(percent)
	return nil
}

func (l *Local) Counters() (Counters, error) { return l.fleet().Counters(), nil }

func (l *Local) PID() int { return os.Getpid() }

func (l *Local) Close() error {
	l.fleet().Close()
	return nil
}

// Service is the fleet's RPC service, served by ServeRPC in the fleet's
// process. Its methods are net/rpc's; use Remote to call them.
type Service struct {
	local *Local
}

// Empty is an RPC argument or reply with nothing in it.
type Empty struct{}

// ConnectArgs are Connect's arguments.
type ConnectArgs struct {
	Target   Target
	Kinds    []Kind
	Clusters []workload.Ref
}

// SyncArgs are WaitSynced's arguments.
type SyncArgs struct {
	From, To int32
	Timeout  time.Duration
}

// WaitArgs are Wait's arguments.
type WaitArgs struct {
	Seqs    []uint32
	Timeout time.Duration
}

func (s *Service) Reset(opts Options, _ *Empty) error { return s.local.Reset(opts) }

func (s *Service) Connect(a ConnectArgs, first *int32) error {
	n, err := s.local.Connect(a.Target, a.Kinds, a.Clusters)
	*first = n
	return err
}

func (s *Service) WaitSynced(a SyncArgs, out *SyncReport) error {
	r, err := s.local.WaitSynced(context.Background(), a.From, a.To, a.Timeout)
	*out = r
	return err
}

func (s *Service) Announce(evs []Event, _ *Empty) error { return s.local.Announce(evs) }

func (s *Service) Wait(a WaitArgs, ok *bool) error {
	r, err := s.local.Wait(context.Background(), a.Seqs, a.Timeout)
	*ok = r
	return err
}

func (s *Service) Report(seqs []uint32, out *[]EventReport) error {
	r, err := s.local.Report(seqs)
	*out = r
	return err
}

func (s *Service) Churn(percent float64, _ *Empty) error { return s.local.Churn(percent) }

func (s *Service) Counters(_ Empty, out *Counters) error {
	c, err := s.local.Counters()
	*out = c
	return err
}

// pipe joins a reader and a writer into a connection.
type pipe struct {
	io.Reader
	io.Writer
	close func() error
}

func (p pipe) Close() error { return p.close() }

// ServeRPC serves the fleet over r and w (the process's stdin and stdout)
// until r ends, then stops every client.
func ServeRPC(r io.Reader, w io.Writer, logger *slog.Logger) error {
	local := NewLocal(logger)
	defer local.Close()
	srv := rpc.NewServer()
	if err := srv.RegisterName("Fleet", &Service{local: local}); err != nil {
		return fmt.Errorf("register fleet service: %w", err)
	}
	srv.ServeConn(pipe{Reader: r, Writer: w, close: func() error { return nil }})
	return nil
}

// Remote is a Pool in a process of its own.
type Remote struct {
	cmd  *exec.Cmd
	rpc  *rpc.Client
	done chan error
}

// Spawn starts argv, which must call ServeRPC on its stdin and stdout, and
// returns a Pool driving it. The process's stderr goes to stderr.
func Spawn(argv []string, stderr io.Writer) (*Remote, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("fleet process: %w", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("fleet process: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start fleet process: %w", err)
	}
	r := &Remote{cmd: cmd, done: make(chan error, 1)}
	r.rpc = rpc.NewClient(pipe{Reader: out, Writer: in, close: in.Close})
	go func() { r.done <- cmd.Wait() }()
	return r, nil
}

// call makes an RPC, giving up when ctx ends.
func (r *Remote) call(ctx context.Context, method string, args, reply any) error {
	c := r.rpc.Go("Fleet."+method, args, reply, make(chan *rpc.Call, 1))
	select {
	case <-c.Done:
		if c.Error != nil {
			return fmt.Errorf("fleet %s: %w", method, c.Error)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fleet %s: %w", method, ctx.Err())
	}
}

func (r *Remote) Reset(opts Options) error {
	return r.call(context.Background(), "Reset", opts, &Empty{})
}

func (r *Remote) Connect(target Target, kinds []Kind, clusters []workload.Ref) (int32, error) {
	var first int32
	err := r.call(context.Background(), "Connect", ConnectArgs{Target: target, Kinds: kinds, Clusters: clusters}, &first)
	return first, err
}

func (r *Remote) WaitSynced(ctx context.Context, from, to int32, timeout time.Duration) (SyncReport, error) {
	var out SyncReport
	err := r.call(ctx, "WaitSynced", SyncArgs{From: from, To: to, Timeout: timeout}, &out)
	return out, err
}

func (r *Remote) Announce(evs []Event) error {
	return r.call(context.Background(), "Announce", evs, &Empty{})
}

func (r *Remote) Wait(ctx context.Context, seqs []uint32, timeout time.Duration) (bool, error) {
	var ok bool
	err := r.call(ctx, "Wait", WaitArgs{Seqs: seqs, Timeout: timeout}, &ok)
	return ok, err
}

func (r *Remote) Report(seqs []uint32) ([]EventReport, error) {
	var out []EventReport
	err := r.call(context.Background(), "Report", seqs, &out)
	return out, err
}

func (r *Remote) Churn(percent float64) error {
	return r.call(context.Background(), "Churn", percent, &Empty{})
}

func (r *Remote) Counters() (Counters, error) {
	var out Counters
	err := r.call(context.Background(), "Counters", Empty{}, &out)
	return out, err
}

func (r *Remote) PID() int { return r.cmd.Process.Pid }

// Close ends the fleet's process: its stdin closes, it stops its clients
// and exits. It is killed if it has not exited within ten seconds.
func (r *Remote) Close() error {
	r.rpc.Close()
	select {
	case err := <-r.done:
		if err != nil {
			return fmt.Errorf("fleet process: %w", err)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		return errors.New("fleet process did not exit; killed it")
	}
}

var (
	_ Pool = (*Local)(nil)
	_ Pool = (*Remote)(nil)
)
