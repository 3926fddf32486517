package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/krm-project/krm/pkg/store"
)

// Event types of a watch stream.
const (
	EventAdded    = "ADDED"
	EventModified = "MODIFIED"
	EventDeleted  = "DELETED"
	EventError    = "ERROR"
	EventBookmark = "BOOKMARK"
)

// watch streams the view's matching rows as ADDED events, then every
// matching change, until the client leaves or the backend drops it.
func (s *Server) watch(w http.ResponseWriter, r *http.Request, res Resource, info ResourceInfo, q *listQuery) {
	// Ending the subscription with the handler, whatever the reason, lets
	// the backend forget this watcher at once.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	snap, _, changes, _ := res.Subscribe(ctx, q.view, 0)
	s.setFreshness(w, snap)
	if err := s.checkStaleness(info, snap, q.maxStaleness); err != nil {
		writeErr(w, err)
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := getWriter(w)
	defer putWriter(bw)

	// A selector can move an object in or out of this watch when it
	// changes, and telling which needs what the watcher was last sent.
	var sent map[string]struct{}
	if q.filtered() {
		sent = make(map[string]struct{})
	}
	rows := snap.Rows
	if q.namespace != "" {
		rows = namespaceRange(rows, q.namespace)
	}
	for _, row := range rows {
		if !q.selects(row) {
			continue
		}
		if sent != nil {
			sent[row.Key()] = struct{}{}
		}
		writeEvent(bw, EventAdded, row)
	}
	// The initial burst is flushed once: it is all available now, and a
	// flush per object would cost a write per object.
	if err := flush(bw, rc); err != nil {
		s.log.Debug("writing watch", "resource", info.Name, "err", err)
		return
	}

	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-changes:
			if !ok {
				if ctx.Err() == nil {
					b, _ := json.Marshal(Event{Type: EventError, Message: fmt.Sprintf("the watch of %s fell behind the changes and was closed; watch again to continue", info.Name)})
					_, _ = bw.Write(append(b, '\n'))
					_ = flush(bw, rc)
				}
				return
			}
			typ, send := q.translate(sent, c)
			if !send {
				continue
			}
			writeEvent(bw, typ, c.Row)
			if err := flush(bw, rc); err != nil {
				s.log.Debug("writing watch", "resource", info.Name, "err", err)
				return
			}
		}
	}
}

// translate turns a change to the view into the event this watcher should
// see, as kube-apiserver does for a filtered watch: a modification that
// takes an object out of the selection is a DELETED, one that brings it in
// an ADDED. sent is nil when nothing but the namespace filters.
func (q *listQuery) translate(sent map[string]struct{}, c Change) (string, bool) {
	row := c.Row
	if row == nil || (q.namespace != "" && row.Namespace != q.namespace) {
		return "", false
	}
	switch c.Type {
	case EventAdded, EventModified, EventDeleted:
	default:
		return "", false
	}
	if sent == nil {
		return c.Type, true
	}
	key := row.Key()
	_, had := sent[key]
	if c.Type == EventDeleted {
		delete(sent, key)
		return EventDeleted, had
	}
	now := q.selects(row)
	switch {
	case had && now:
		return EventModified, true
	case had:
		delete(sent, key)
		return EventDeleted, true
	case now:
		sent[key] = struct{}{}
		return EventAdded, true
	}
	return "", false
}

// writeEvent writes one ndjson Event line, splicing in the stored object.
func writeEvent(bw *bufio.Writer, typ string, row *store.Row) {
	buf := bw.AvailableBuffer()
	buf = append(buf, `{"type":"`...)
	buf = append(buf, typ...)
	buf = append(buf, `","object":`...)
	_, _ = bw.Write(buf)
	_, _ = bw.Write(objectBytes(row))
	buf = append(bw.AvailableBuffer(), `,"krm":`...)
	buf = appendRowMeta(buf, row)
	_, _ = bw.Write(append(buf, "}\n"...))
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
