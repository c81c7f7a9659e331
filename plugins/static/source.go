package static

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/xdsbridge/xdsbridge/sdk"
)

// debounce is how long Run waits after a change to the file before reading
// it, so that a burst of events (an editor's write, rename and chmod) is
// read once, whole.
const debounce = 50 * time.Millisecond

// Source serves a cluster file. Build one with New.
type Source struct {
	path     string
	log      *slog.Logger
	debounce time.Duration
	running  atomic.Bool
}

// New builds a Source for the file cfg.Path. logger may be nil. It reads
// nothing until Run.
func New(cfg Config, logger *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Source{path: cfg.Path, log: logger, debounce: debounce}, nil
}

// Run serves the file until ctx ends, then returns nil; it never closes up.
//
// The first update is the file's full state, with a Connected status. Each
// time the file changes, Run reads it again and sends the new full state if
// it differs. A file that is missing or has any problem is not served at
// all: Run logs every problem and sends a Disconnected status whose reason
// is the first of them, and the host keeps serving the last good state.
// When the file is good again, Run sends its full state with a Connected
// status.
//
// Run watches the file's directory rather than the file, so that editors
// that replace the file, atomic renames over it and Kubernetes ConfigMap
// updates (a swap of the ..data symlink) are all seen.
func (s *Source) Run(ctx context.Context, up chan<- sdk.Update) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("static: source is already running")
	}
	defer s.running.Store(false)

	dir, base := filepath.Dir(s.path), filepath.Base(s.path)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("static: watch %s: %w", dir, err)
	}
	defer w.Close()
	// Watch before the first read, so that no change falls between them.
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("static: watch %s: %w", dir, err)
	}

	var st state
	if !s.reload(ctx, up, &st) {
		return nil
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop() // armed by the first relevant event
	defer timer.Stop()
	armed := false
	arm := func() {
		if !armed {
			armed = true
			timer.Reset(s.debounce)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("static: file watcher stopped")
			}
			if relevant(ev, base) {
				arm()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("static: file watcher stopped")
			}
			// An overflow loses events: read the file to be sure.
			s.log.Warn("watching cluster file", "file", s.path, "err", err)
			arm()
		case <-timer.C:
			armed = false
			if !s.reload(ctx, up, &st) {
				return nil
			}
			if st.missingRetry {
				// The file was missing: an editor may be between moving
				// the old file away and putting the new one in place.
				// Look once more before saying so.
				arm()
			}
		}
	}
}

// relevant reports whether ev may have changed the file called base: an
// event on the file itself, or on a Kubernetes ConfigMap's ..data symlink
// (or its temporary twin).
func relevant(ev fsnotify.Event, base string) bool {
	name := filepath.Base(ev.Name)
	if name != base && !strings.HasPrefix(name, "..") {
		return false
	}
	return ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename)
}

// state is what Run remembers between two reads of the file.
type state struct {
	data   []byte      // the last contents read; nil when unreadable
	read   bool        // data holds a successful read
	sent   *sdk.Update // the last full state sent
	status sdk.State   // the last status sent
	reason string
	// missingRetry is set when the file was found missing and that has not
	// been reported yet: Run looks again once before reporting it.
	missingRetry bool
	missingSeen  bool
}

// reload reads the file and sends what changed. It returns false when ctx
// ended before an update could be sent.
func (s *Source) reload(ctx context.Context, up chan<- sdk.Update, st *state) bool {
	data, err := os.ReadFile(s.path)
	var errs sdk.ConfigErrors
	var upd sdk.Update
	switch {
	case errors.Is(err, fs.ErrNotExist) && st.sent != nil && !st.missingSeen:
		// Missing after having been served: look again after a debounce.
		st.missingSeen, st.missingRetry = true, true
		return true
	case err != nil:
		st.data, st.read = nil, false
		errs = sdk.ConfigErrors{{File: s.path, Message: readError(err)}}
	case st.read && bytes.Equal(data, st.data):
		st.missingSeen, st.missingRetry = false, false
		return true // an event that changed nothing
	default:
		st.data, st.read = data, true
		upd, errs = parseFile(s.path, data)
	}
	st.missingRetry = false
	if err == nil {
		st.missingSeen = false
	}

	if len(errs) > 0 {
		for _, e := range errs {
			attrs := []any{"file", s.path, "err", e.Message}
			if e.Line > 0 {
				attrs = append(attrs, "line", e.Line)
			}
			s.log.Error("invalid cluster file; serving its last good state", attrs...)
		}
		reason := errs[0].Error()
		if len(errs) > 1 {
			reason += fmt.Sprintf(" (and %d more problems)", len(errs)-1)
		}
		if st.status == sdk.Disconnected && st.reason == reason {
			return true
		}
		st.status, st.reason = sdk.Disconnected, reason
		return send(ctx, up, sdk.Update{Status: &sdk.Status{State: sdk.Disconnected, Reason: reason}})
	}

	if st.status == sdk.Connected && st.sent != nil && reflect.DeepEqual(*st.sent, upd) {
		return true // a change that serves the same (a comment, say)
	}
	s.log.Info("serving cluster file", "file", s.path, "clusters", len(upd.Clusters), "resources", len(upd.Resources))
	sent := upd
	if st.status != sdk.Connected {
		upd.Status = &sdk.Status{State: sdk.Connected}
	}
	st.sent, st.status, st.reason = &sent, sdk.Connected, ""
	return send(ctx, up, upd)
}

func send(ctx context.Context, up chan<- sdk.Update, u sdk.Update) bool {
	select {
	case up <- u:
		return true
	case <-ctx.Done():
		return false
	}
}

var _ sdk.Source = (*Source)(nil)
