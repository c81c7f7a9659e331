// Command faultplugin is an xdsbridge source plugin that misbehaves on
// command, for the reliability tests in test/e2e.
//
// In its default mode it speaks go-plugin's handshake and proto/source/v1
// itself, without the SDK, so that it can send what no SDK plugin can: bytes
// that are not protobuf, messages over the size limit, split updates that
// change kind midway. In -mode sdk it serves the same script through
// sdk.Serve, as a well-behaved third-party plugin would.
//
// What it sends comes from a script: a file of JSON lines, one step each,
// that it reads when the host opens its watch stream and then follows, so
// a test can append steps while the plugin runs. Each start of the process
// runs the script from its first line; a step with "gen" runs only in that
// start (0 is the first), which is how a test makes only the first start
// misbehave.
//
// Usage (the host gives a plugin an almost empty environment, so every
// setting is a flag):
//
//	faultplugin [-mode serve|sdk|exit|handshake|apiversion|reject]
//	            [-script FILE] [-startlog FILE] [-reason TEXT]
//	            [-max-silence DURATION]
//
// -max-silence is declared to the host as the source's liveness promise
// (ConfigureResponse.max_silence); with a "block" step the source then
// breaks it.
//
// Modes other than serve and sdk fail at start-up:
//
//	exit        print -reason on stderr and exit with status 3 before the handshake
//	handshake   print a line that is not a handshake, then wait to be killed
//	apiversion  complete the handshake, then claim source API version 99 only
//	reject      reject every configuration with a field error
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/xdsbridge/xdsbridge/internal/wire"
	sourcev1 "github.com/xdsbridge/xdsbridge/proto/source/v1"
	"github.com/xdsbridge/xdsbridge/sdk"
)

// Step is one line of a script. Exactly one action field is set.
type Step struct {
	// Gen, when set, runs the step only in that start of the process.
	Gen *int `json:"gen,omitempty"`

	// Update is a sourcev1.Update in proto JSON, split into messages as
	// the SDK splits updates.
	Update json.RawMessage `json:"update,omitempty"`
	// Resources are added to Update's resources as they are: an Any with
	// any type URL and any bytes, which proto JSON cannot express.
	Resources []RawAny `json:"resources,omitempty"`
	// Part is a sourcev1.Update in proto JSON sent as one message, as it
	// is (more=true included).
	Part json.RawMessage `json:"part,omitempty"`
	// Raw is hex-encoded bytes sent as one message, protobuf or not.
	Raw string `json:"raw,omitempty"`
	// Pad sends one status update whose reason is Pad bytes long, as one
	// message.
	Pad int `json:"pad,omitempty"`
	// Big sends a generated full state.
	Big *Big `json:"big,omitempty"`
	// Sleep pauses the script.
	Sleep string `json:"sleep,omitempty"`
	// Exit ends the process with this status.
	Exit *int `json:"exit,omitempty"`
	// Stop sends the process SIGSTOP: it hangs, answering nothing.
	Stop bool `json:"stop,omitempty"`
	// End ends the watch stream: "ok" cleanly, anything else as a gRPC
	// error with that message.
	End string `json:"end,omitempty"`
	// Block blocks the watch forever, deaf to cancellation: a Run that
	// deadlocked while the process still answers health checks.
	Block bool `json:"block,omitempty"`
}

// RawAny is an Envoy resource as a type URL and bytes (base64 in JSON).
type RawAny struct {
	Type  string `json:"type"`
	Value []byte `json:"value"`
}

// Big describes a generated full state: Clusters clusters named
// Prefix0000, Prefix0001, … with Endpoints endpoints each, all on Port,
// at distinct addresses 10.x.y.z.
type Big struct {
	Prefix    string `json:"prefix"`
	Clusters  int    `json:"clusters"`
	Endpoints int    `json:"endpoints"`
	Port      uint32 `json:"port"`
}

func main() {
	mode := flag.String("mode", "serve", "serve, sdk, exit, handshake, apiversion or reject")
	script := flag.String("script", "", "file of JSON-lines steps")
	startlog := flag.String("startlog", "", "file to append a line to at each start")
	reason := flag.String("reason", "faultplugin told to fail", "message for -mode exit")
	maxSilence := flag.Duration("max-silence", 0, "liveness promise declared to the host (0: none)")
	flag.Parse()

	gen := 0
	if *startlog != "" {
		var err error
		if gen, err = logStart(*startlog); err != nil {
			fmt.Fprintln(os.Stderr, "faultplugin:", err)
			os.Exit(2)
		}
	}
	r := &runner{script: *script, gen: gen, maxSilence: *maxSilence}
	switch *mode {
	case "serve", "apiversion", "reject":
		serveRaw(&server{runner: r, mode: *mode})
	case "sdk":
		serveSDK(r)
	case "exit":
		fmt.Fprintln(os.Stderr, *reason)
		os.Exit(3)
	case "handshake":
		fmt.Println("this is not a go-plugin handshake")
		time.Sleep(time.Minute) // the host kills it long before
		os.Exit(1)
	default:
		fmt.Fprintf(os.Stderr, "faultplugin: unknown mode %q\n", *mode)
		os.Exit(2)
	}
}

// logStart appends "gen pid unix-nanoseconds" to path and returns gen, the
// number of earlier starts.
func logStart(path string) (int, error) {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	gen := bytes.Count(old, []byte("\n"))
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%d %d %d\n", gen, os.Getpid(), time.Now().UnixNano())
	return gen, err
}

// rawFrame is a message the codec sends as it is.
type rawFrame []byte

// codec is gRPC's proto codec, plus rawFrame.
type codec struct{ proto encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(rawFrame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f)}, nil
	}
	return c.proto.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }
func (c codec) Name() string                                { return c.proto.Name() }

func serveRaw(s *server) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         plugin.PluginSet{wire.PluginName: &wire.GRPCPlugin{Impl: s}},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			// No send limit: the host's receive limit is what is tested.
			opts = append(opts, grpc.ForceServerCodecV2(codec{encoding.GetCodecV2("proto")}))
			return grpc.NewServer(opts...)
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Warn}),
	})
}

// server implements proto/source/v1 by hand.
type server struct {
	sourcev1.UnimplementedSourceServer
	runner *runner
	mode   string
}

func (s *server) Info(context.Context, *sourcev1.InfoRequest) (*sourcev1.InfoResponse, error) {
	versions := []uint32{wire.APIVersion}
	if s.mode == "apiversion" {
		versions = []uint32{99}
	}
	return &sourcev1.InfoResponse{Name: "faultplugin", Version: "0.0.1", ApiVersions: versions}, nil
}

func (s *server) Configure(_ context.Context, req *sourcev1.ConfigureRequest) (*sourcev1.ConfigureResponse, error) {
	if s.mode == "reject" {
		return &sourcev1.ConfigureResponse{Errors: []*sourcev1.FieldError{{Path: "mode", Message: "faultplugin rejects every configuration"}}}, nil
	}
	resp := &sourcev1.ConfigureResponse{}
	if s.runner.maxSilence > 0 {
		resp.MaxSilence = durationpb.New(s.runner.maxSilence)
	}
	return resp, nil
}

func (s *server) Watch(_ *sourcev1.WatchRequest, stream grpc.ServerStreamingServer[sourcev1.Update]) error {
	err := s.runner.run(stream.Context(), rawEmitter{stream})
	var end endStream
	if errors.As(err, &end) {
		if end == "ok" {
			return nil
		}
		return status.Error(codes.Internal, string(end))
	}
	return err
}

// rawEmitter sends on the watch stream.
type rawEmitter struct {
	stream grpc.ServerStreamingServer[sourcev1.Update]
}

func (e rawEmitter) update(u *sourcev1.Update) error {
	for _, p := range wire.Split(u) {
		if err := e.stream.Send(p); err != nil {
			return err
		}
	}
	return nil
}

func (e rawEmitter) part(u *sourcev1.Update) error { return e.stream.Send(u) }
func (e rawEmitter) raw(b []byte) error            { return e.stream.SendMsg(rawFrame(b)) }

// emitter is where a script's messages go.
type emitter interface {
	update(u *sourcev1.Update) error
	part(u *sourcev1.Update) error
	raw(b []byte) error
}

// endStream asks Watch to end the stream.
type endStream string

func (e endStream) Error() string { return "end: " + string(e) }

// runner runs a script.
type runner struct {
	script     string
	gen        int
	maxSilence time.Duration
}

// run executes the script's steps in order, then follows the file for
// more until ctx ends.
func (r *runner) run(ctx context.Context, out emitter) error {
	done := 0
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		steps, err := readScript(r.script)
		if err != nil {
			return status.Errorf(codes.Internal, "faultplugin: %v", err)
		}
		for ; done < len(steps); done++ {
			st := steps[done]
			if st.Gen != nil && *st.Gen != r.gen {
				continue
			}
			if err := r.do(ctx, st, out); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func readScript(path string) ([]Step, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var steps []Step
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var st Step
		if err := json.Unmarshal([]byte(line), &st); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, n, err)
		}
		steps = append(steps, st)
	}
	return steps, sc.Err()
}

func (r *runner) do(ctx context.Context, st Step, out emitter) error {
	switch {
	case st.Update != nil:
		u, err := parseUpdate(st.Update)
		if err != nil {
			return err
		}
		for _, r := range st.Resources {
			u.Resources = append(u.Resources, &sourcev1.Resource{Resource: &anypb.Any{TypeUrl: r.Type, Value: r.Value}})
		}
		return out.update(u)
	case st.Part != nil:
		u, err := parseUpdate(st.Part)
		if err != nil {
			return err
		}
		return out.part(u)
	case st.Raw != "":
		b, err := hex.DecodeString(st.Raw)
		if err != nil {
			return status.Errorf(codes.Internal, "faultplugin: raw: %v", err)
		}
		return out.raw(b)
	case st.Pad > 0:
		return out.part(&sourcev1.Update{Status: &sourcev1.Status{State: sourcev1.Status_CONNECTED, Reason: strings.Repeat("x", st.Pad)}})
	case st.Big != nil:
		return out.update(st.Big.update())
	case st.Sleep != "":
		d, err := time.ParseDuration(st.Sleep)
		if err != nil {
			return status.Errorf(codes.Internal, "faultplugin: sleep: %v", err)
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		return nil
	case st.Exit != nil:
		os.Exit(*st.Exit)
	case st.Stop:
		return syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	case st.End != "":
		return endStream(st.End)
	case st.Block:
		select {} // deadlocked: only the host's kill ends it
	}
	return nil
}

func parseUpdate(b []byte) (*sourcev1.Update, error) {
	var u sourcev1.Update
	if err := protojson.Unmarshal(b, &u); err != nil {
		return nil, status.Errorf(codes.Internal, "faultplugin: update: %v", err)
	}
	return &u, nil
}

func (b *Big) update() *sourcev1.Update {
	u := &sourcev1.Update{Full: true, Clusters: make([]*sourcev1.Cluster, b.Clusters), Status: &sourcev1.Status{State: sourcev1.Status_CONNECTED}}
	for c := range b.Clusters {
		eps := make([]*sourcev1.Endpoint, b.Endpoints)
		for e := range eps {
			eps[e] = &sourcev1.Endpoint{Address: fmt.Sprintf("10.%d.%d.%d", e>>16&255, e>>8&255, e&255), Port: b.Port}
		}
		u.Clusters[c] = &sourcev1.Cluster{Name: fmt.Sprintf("%s%04d", b.Prefix, c), Endpoints: eps}
	}
	return u
}

// serveSDK serves the script through the SDK: what a well-behaved
// third-party plugin can send.
func serveSDK(r *runner) {
	sdk.Serve(sdk.Plugin{
		Name:    "faultplugin",
		Version: "0.0.1",
		Configure: func(context.Context, sdk.ConfigureRequest) (sdk.Source, error) {
			return sdkSource{r}, nil
		},
	})
}

type sdkSource struct{ r *runner }

// MaxSilence implements sdk.Liveness.
func (s sdkSource) MaxSilence() time.Duration { return s.r.maxSilence }

func (s sdkSource) Run(ctx context.Context, up chan<- sdk.Update) error {
	err := s.r.run(ctx, sdkEmitter{ctx, up})
	var end endStream
	if errors.As(err, &end) && end == "ok" {
		return nil
	}
	return err
}

// sdkEmitter converts a script's updates to the SDK's types.
type sdkEmitter struct {
	ctx context.Context
	up  chan<- sdk.Update
}

func (e sdkEmitter) update(u *sourcev1.Update) error {
	out := sdk.Update{Full: u.GetFull(), RemovedClusters: u.GetRemovedClusters()}
	for _, c := range u.GetClusters() {
		sc := sdk.Cluster{Name: c.GetName(), Overlay: c.GetOverlay()}
		for _, ep := range c.GetEndpoints() {
			l := ep.GetLocality()
			sc.Endpoints = append(sc.Endpoints, sdk.Endpoint{
				Address: ep.GetAddress(), Port: ep.GetPort(), Weight: ep.GetWeight(),
				Health: sdk.Health(ep.GetHealth()), Priority: ep.GetPriority(), Hostname: ep.GetHostname(),
				Locality: sdk.Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()},
			})
		}
		out.Clusters = append(out.Clusters, sc)
	}
	for _, r := range u.GetResources() {
		out.Resources = append(out.Resources, sdk.Resource{TypeURL: r.GetResource().GetTypeUrl(), Value: r.GetResource().GetValue()})
	}
	for _, r := range u.GetRemovedResources() {
		out.RemovedResources = append(out.RemovedResources, sdk.ResourceRef{TypeURL: r.GetTypeUrl(), Name: r.GetName()})
	}
	if s := u.GetStatus(); s != nil {
		st := sdk.StateUnknown
		switch s.GetState() {
		case sourcev1.Status_CONNECTED:
			st = sdk.Connected
		case sourcev1.Status_DISCONNECTED:
			st = sdk.Disconnected
		}
		out.Status = &sdk.Status{State: st, Reason: s.GetReason()}
	}
	select {
	case e.up <- out:
		return nil
	case <-e.ctx.Done():
		return nil
	}
}

func (e sdkEmitter) part(u *sourcev1.Update) error { return e.update(u) }

func (e sdkEmitter) raw([]byte) error {
	return errors.New("faultplugin: raw bytes cannot be sent through the SDK")
}
