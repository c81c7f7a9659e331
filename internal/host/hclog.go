package host

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter sends go-plugin's logging, including every line a plugin
// writes to stderr, to a slog.Logger.
type hclogAdapter struct {
	l    *slog.Logger
	args []any
}

func newHCLogAdapter(l *slog.Logger) hclog.Logger { return &hclogAdapter{l: l} }

func slogLevel(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	a.l.Log(context.Background(), slogLevel(level), msg, fixArgs(args)...)
}

// fixArgs renames hclog's conventional "error" key to ours and drops the
// "timestamp" go-plugin adds to each plugin line (our handler stamps lines).
func fixArgs(args []any) []any {
	out := args[:0:0]
	for i := 0; i+1 < len(args); i += 2 {
		k, _ := args[i].(string)
		switch k {
		case "timestamp":
			continue
		case "error":
			out = append(out, "err", args[i+1])
		default:
			out = append(out, args[i], args[i+1])
		}
	}
	return out
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(l slog.Level) bool { return a.l.Enabled(context.Background(), l) }
func (a *hclogAdapter) IsTrace() bool             { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsDebug() bool             { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool              { return a.enabled(slog.LevelInfo) }
func (a *hclogAdapter) IsWarn() bool              { return a.enabled(slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool             { return a.enabled(slog.LevelError) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.args }
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: a.l.With(fixArgs(args)...), args: append(a.args[:len(a.args):len(a.args)], args...)}
}
func (a *hclogAdapter) Name() string                   { return "" }
func (a *hclogAdapter) Named(string) hclog.Logger      { return a }
func (a *hclogAdapter) ResetNamed(string) hclog.Logger { return a }
func (a *hclogAdapter) SetLevel(hclog.Level)           {}
func (a *hclogAdapter) GetLevel() hclog.Level          { return hclog.Debug }
func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return slogWriter{a.l}
}
func (a *hclogAdapter) StandardLogger(o *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(o), "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Info(string(p))
	return len(p), nil
}
