package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

// Event types of a watch stream.
const (
	eventAdded    = api.EventAdded
	eventModified = api.EventModified
	eventDeleted  = api.EventDeleted
	eventBookmark = api.EventBookmark
)

// initialEventsEnd is the annotation of the bookmark that ends WatchList's
// initial events.
const initialEventsEnd = "k8s.io/initial-events-end"

// serveWatch streams the resource's changes with kube-apiserver's watch
// semantics:
//   - resourceVersion "" or "0" (and no sendInitialEvents): ADDED for every
//     object of the current state, then every change;
//   - resourceVersion X: every change after X, or 410 Gone in an ERROR
//     event when the agent no longer holds them all;
//   - sendInitialEvents=true (WatchList): the state at least as new as X,
//     then, with allowWatchBookmarks, the bookmark annotated
//     k8s.io/initial-events-end, then every change;
//   - allowWatchBookmarks: a BOOKMARK every BookmarkInterval;
//   - timeoutSeconds, else 30 to 60 minutes as kube-apiserver's default.
//
// A client that stops reading is let go once one write has blocked for
// WriteTimeout (the recorder sets the deadline before every write, the
// initial events' included), and counted in krm_watches_dropped_total.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, req *request) {
	if n := s.watches.Add(1); n > int64(s.opts.MaxWatches) {
		s.watches.Add(-1)
		w.Header().Set("Retry-After", "1")
		s.writeStatus(w, apierrors.NewTooManyRequests(fmt.Sprintf("krm serves at most %d watches at once (--max-watches); try again shortly", s.opts.MaxWatches), 1))
		return
	}
	defer s.watches.Add(-1)
	s.metrics.watchStarted()
	defer s.metrics.watchEnded()
	if err := s.streamWatch(w, r, req); err != nil {
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.metrics.watchDropped(req.info.Name, dropWriteTimeout)
		case errors.Is(err, errFellBehind):
			s.metrics.watchDropped(req.info.Name, dropFellBehind)
		}
		var enc *encodeError
		if errors.As(err, &enc) {
			s.log.Error("ending a watch", "resource", req.info.Name, "err", err)
		} else {
			s.log.Debug("watch ended", "resource", req.info.Name, "err", err)
		}
	}
}

// errFellBehind ends a watch whose backend closed its channel of changes.
var errFellBehind = errors.New("the watch fell too far behind its changes and was let go")

// streamWatch serves one admitted watch; its error says why it ended early
// (nil when the client left, the watch timed out or the agent stopped).
func (s *Server) streamWatch(w http.ResponseWriter, r *http.Request, req *request) error {
	timeout := time.Duration(1800+rand.IntN(1800)) * time.Second
	if t := req.opts.TimeoutSeconds; t != nil && *t > 0 {
		timeout = time.Duration(*t) * time.Second
	}
	// Ending the subscription with the handler lets the backend forget the
	// watcher at once, whatever ended it.
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()

	initial := req.rv == 0
	if req.opts.SendInitialEvents != nil {
		initial = *req.opts.SendInitialEvents
	}
	endBookmark := initial && req.opts.SendInitialEvents != nil && req.opts.AllowWatchBookmarks
	// A resourceVersion the agent has not reached yet is waited for, as
	// the watch cache does, before anything is sent.
	if req.rv > 0 {
		if _, err := s.snapshotAtLeast(ctx, req, req.rv); err != nil {
			s.writeStatus(w, err)
			return nil
		}
	}
	from := req.rv
	if initial {
		from = 0
	}
	snap, backlog, changes, err := req.res.Subscribe(ctx, req.view, from)
	var old *api.TooOldError
	if errors.As(err, &old) {
		// kube-apiserver answers 200 and says 410 in the stream.
		w.Header().Set("Content-Type", "application/json")
		bw := getWriter(w)
		defer putWriter(bw)
		s.newEncoder(req).errorEvent(bw, tooOld(old.Requested, old.Oldest))
		return bw.Flush()
	}
	if !s.admit(w, req, snap, err) {
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := getWriter(w)
	defer putWriter(bw)
	enc := s.newEncoder(req)

	lastRV := max(from, snap.Header.ResourceVersion)
	if initial {
		var err error
		eachRow(snap.Rows, req, func(row *store.Row) {
			if err == nil {
				err = enc.event(bw, eventAdded, row)
			}
		})
		if err != nil {
			return err
		}
		if endBookmark {
			enc.bookmark(bw, snap.Header.ResourceVersion, true)
		}
	}
	for _, c := range backlog {
		if err := s.sendChange(bw, enc, req, c); err != nil {
			return err
		}
	}
	if err := flush(bw, rc); err != nil {
		return err
	}

	var tick, last <-chan time.Time
	if req.opts.AllowWatchBookmarks {
		t := time.NewTicker(s.opts.BookmarkInterval)
		defer t.Stop()
		tick = t.C
		// One more shortly before the timeout, as kube-apiserver sends,
		// so the client resumes from as late as possible.
		if timeout > 4*time.Second {
			l := time.NewTimer(timeout - 2*time.Second)
			defer l.Stop()
			last = l.C
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
			enc.bookmark(bw, lastRV, false)
		case <-last:
			enc.bookmark(bw, lastRV, false)
		case c, ok := <-changes:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				// The watcher fell behind and was let go; the client
				// watches again from the last resourceVersion it got.
				return errFellBehind
			}
			if c.Type == eventBookmark {
				lastRV = max(lastRV, c.ResourceVersion)
				continue
			}
			if err := s.sendChange(bw, enc, req, c); err != nil {
				return err
			}
			lastRV = max(lastRV, c.ResourceVersion)
			// Send what has queued up in one write.
			for len(changes) > 0 && bw.Buffered() < 32<<10 {
				c, ok = <-changes
				if !ok {
					break
				}
				if c.Type != eventBookmark {
					if err := s.sendChange(bw, enc, req, c); err != nil {
						return err
					}
				}
				lastRV = max(lastRV, c.ResourceVersion)
			}
		}
		if err := flush(bw, rc); err != nil {
			return err
		}
	}
}

func (s *Server) sendChange(bw *bufio.Writer, enc *encoder, req *request, c api.Change) error {
	typ, send := req.translate(c)
	if !send {
		return nil
	}
	row := c.Row
	if typ == eventDeleted && c.Type == eventModified {
		// The object left the selection: the watch cache sends its last
		// state that matched, at the change's resourceVersion.
		var err error
		if row, err = atResourceVersion(c.Prev, c.Row.ResourceVersion); err != nil {
			return &encodeError{err}
		}
	}
	return enc.event(bw, typ, row)
}

// encodeError is a watch event that could not be encoded, told apart from
// a write that failed.
type encodeError struct{ err error }

func (e *encodeError) Error() string { return "encoding a watch event: " + e.err.Error() }

func (e *encodeError) Unwrap() error { return e.err }

// translate turns a change into the event this watch sends, as the watch
// cache does for a filtered watch: a change that takes an object out of the
// selection is a DELETED, one that brings it in an ADDED.
func (req *request) translate(c api.Change) (string, bool) {
	if c.Row == nil {
		return "", false
	}
	prevIn := c.Prev != nil && req.selects(c.Prev)
	switch c.Type {
	case eventAdded:
		return eventAdded, req.selects(c.Row)
	case eventDeleted:
		return eventDeleted, prevIn || (c.Prev == nil && req.selects(c.Row))
	case eventModified:
		now := req.selects(c.Row)
		switch {
		case now && prevIn:
			return eventModified, true
		case now:
			return eventAdded, true
		case prevIn:
			return eventDeleted, true
		}
	}
	return "", false
}

func flush(bw *bufio.Writer, rc *http.ResponseController) error {
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// encoder writes watch events in the request's format.
type encoder struct {
	s     *Server
	req   *request
	cache *tableCache
	// cols are the Table's columns, chosen once: every event of a watch
	// has the same.
	cols tableColumns
	// columnsSent: a Table watch sends its column definitions with the
	// first event only, as kube-apiserver does.
	columnsSent bool
}

func (s *Server) newEncoder(req *request) *encoder {
	e := &encoder{s: s, req: req}
	if req.format != formatObject {
		e.cache, _ = s.tables.forResource(req.info)
		if e.cache != nil {
			e.cols = e.cache.columns(req.res)
		}
	}
	return e
}

func (e *encoder) event(bw *bufio.Writer, typ string, row *store.Row) error {
	buf := bw.AvailableBuffer()
	buf = append(buf, `{"type":"`...)
	buf = append(buf, typ...)
	buf = append(buf, `","object":`...)
	switch {
	case e.req.format == formatTable && e.cache != nil:
		buf = append(buf, `{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"`...)
		buf = strconv.AppendUint(buf, row.ResourceVersion, 10)
		buf = append(buf, `"},"columnDefinitions":`...)
		if e.columnsSent {
			buf = append(buf, "[]"...)
		} else {
			cols, err := json.Marshal(e.cols.defs)
			if err != nil {
				return &encodeError{err}
			}
			buf = append(buf, cols...)
			e.columnsSent = true
		}
		buf = append(buf, `,"rows":[`...)
		var err error
		if buf, err = e.s.tableRow(buf, e.cache, &e.cols, e.req, row, e.s.now()); err != nil {
			return &encodeError{err}
		}
		buf = append(buf, "]}"...)
	case e.req.format == formatMetadata && e.cache != nil:
		buf = appendMetadata(buf, e.cache.render(row, nil).meta)
	default:
		buf = append(buf, objectBytes(row)...)
	}
	_, err := bw.Write(append(buf, "}\n"...))
	return err
}

// bookmark writes a BOOKMARK at rv: an object of the watched kind that has
// nothing but its resourceVersion (and the initial-events-end annotation).
func (e *encoder) bookmark(bw *bufio.Writer, rv uint64, end bool) {
	buf := bw.AvailableBuffer()
	buf = append(buf, `{"type":"BOOKMARK","object":{"kind":`...)
	switch e.req.format {
	case formatTable:
		buf = append(buf, `"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"`...)
		buf = strconv.AppendUint(buf, rv, 10)
		buf = append(buf, `"},"columnDefinitions":[],"rows":[]}}`+"\n"...)
		_, _ = bw.Write(buf)
		return
	case formatMetadata:
		buf = append(buf, `"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1"`...)
	default:
		buf = appendString(buf, e.req.info.Kind)
		buf = append(buf, `,"apiVersion":`...)
		buf = appendString(buf, e.req.info.APIVersion())
	}
	buf = append(buf, `,"metadata":{"resourceVersion":"`...)
	buf = strconv.AppendUint(buf, rv, 10)
	buf = append(buf, '"')
	if end {
		buf = append(buf, `,"annotations":{"`+initialEventsEnd+`":"true"}`...)
	}
	_, _ = bw.Write(append(buf, "}}}\n"...))
}

// errorEvent writes an ERROR event carrying err's Status.
func (e *encoder) errorEvent(bw *bufio.Writer, err error) {
	st := metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}
	if as, ok := err.(interface{ Status() metav1.Status }); ok {
		st = as.Status()
	}
	st.Kind, st.APIVersion = "Status", "v1"
	b, _ := json.Marshal(st)
	buf := append(bw.AvailableBuffer(), `{"type":"ERROR","object":`...)
	buf = append(buf, b...)
	_, _ = bw.Write(append(buf, "}\n"...))
}

// atResourceVersion returns a copy of row whose object says resourceVersion
// rv. It decodes and encodes the object, which only an object leaving a
// filtered watch costs.
func atResourceVersion(row *store.Row, rv uint64) (*store.Row, error) {
	var obj map[string]any
	if err := json.Unmarshal(row.Object, &obj); err != nil {
		return nil, err
	}
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	meta["resourceVersion"] = strconv.FormatUint(rv, 10)
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	c := *row
	c.Object, c.ResourceVersion = b, rv
	return &c, nil
}
