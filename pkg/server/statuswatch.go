package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/store"
)

// Bounds of a resourcestatuses watch.
const (
	// statusCoalesce is the least time between two writes of a status
	// watch: a burst of churn becomes one MODIFIED per resource, not one per
	// object changed.
	statusCoalesce = 250 * time.Millisecond
	// statusRecheck is how often a status watch compares the statuses even
	// when no object changed, for what changes without one: a LIST landing,
	// the stream dropping, the events-per-minute rate falling.
	statusRecheck = 2 * time.Second
)

// serveStatusWatch streams resourcestatuses as a Kubernetes watch: ADDED
// for every watched resource, then MODIFIED each time one's status changes,
// DELETED when a resource stops being watched. A change to any resource's
// objects wakes it (at most every statusCoalesce); other changes are found
// within statusRecheck. It counts against --max-watches like every watch,
// and a client that stops reading is let go after Options.WriteTimeout.
func (s *Server) serveStatusWatch(w http.ResponseWriter, r *http.Request, f format) {
	if n := s.watches.Add(1); n > int64(s.opts.MaxWatches) {
		s.watches.Add(-1)
		w.Header().Set("Retry-After", "1")
		s.writeStatus(w, apierrors.NewTooManyRequests(fmt.Sprintf("krm serves at most %d watches at once (--max-watches); try again shortly", s.opts.MaxWatches), 1))
		return
	}
	defer s.watches.Add(-1)
	s.metrics.watchStarted()
	defer s.metrics.watchEnded()
	opts := listOptions(r)
	timeout := time.Duration(1800+rand.IntN(1800)) * time.Second
	if opts.TimeoutSeconds != nil && *opts.TimeoutSeconds > 0 {
		timeout = time.Duration(*opts.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	includeObject := r.URL.Query().Get("includeObject")

	// One wake-up channel for every resource's changes; the goroutines
	// only drain their subscriptions into it.
	wake := make(chan struct{}, 1)
	lost := make(chan struct{}, 1)
	for _, st := range s.backend.Resources().Resources {
		res, ok := s.backend.Resource(st.Name)
		if !ok {
			continue
		}
		_, _, changes, err := res.Subscribe(ctx, store.Aggregated, 0)
		if err != nil {
			// A resource with nothing to serve yet still has a status;
			// the recheck shows it.
			continue
		}
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case c, ok := <-changes:
					if !ok {
						select {
						case lost <- struct{}{}:
						default:
						}
						return
					}
					if c.Type == eventBookmark {
						continue
					}
					select {
					case wake <- struct{}{}:
					default:
					}
				}
			}
		}()
	}

	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	bw := getWriter(w)
	defer putWriter(bw)

	sent := map[string][]byte{}
	send := func() error {
		items := s.backend.Resources().Resources
		seen := make(map[string]bool, len(items))
		for _, st := range items {
			seen[st.Name] = true
			obj := resourceStatus(st)
			b, err := json.Marshal(&obj)
			if err != nil {
				return err
			}
			prev, had := sent[st.Name]
			if had && bytes.Equal(prev, b) {
				continue
			}
			typ := eventModified
			if !had {
				typ = eventAdded
			}
			if err := s.writeStatusEvent(bw, typ, b, &obj, f, includeObject); err != nil {
				return err
			}
			sent[st.Name] = b
		}
		names := make([]string, 0, len(sent))
		for name := range sent {
			if !seen[name] {
				names = append(names, name)
			}
		}
		slices.Sort(names)
		for _, name := range names {
			var obj krmv1alpha1.ResourceStatus
			if err := json.Unmarshal(sent[name], &obj); err != nil {
				return err
			}
			if err := s.writeStatusEvent(bw, eventDeleted, sent[name], &obj, f, includeObject); err != nil {
				return err
			}
			delete(sent, name)
		}
		if err := rc.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
		return flush(bw, rc)
	}
	if err := send(); err != nil {
		s.log.Debug("writing the resourcestatuses watch", "err", err)
		return
	}
	recheck := time.NewTicker(statusRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-lost:
			// A subscription fell behind and was let go; the client
			// watches again, as after any watch ends.
			return
		case <-wake:
		case <-recheck.C:
		}
		if err := send(); err != nil {
			s.log.Debug("writing the resourcestatuses watch", "err", err)
			return
		}
		// Let a burst gather before the next write.
		select {
		case <-ctx.Done():
			return
		case <-time.After(statusCoalesce):
		}
	}
}

// writeStatusEvent writes one watch event of a ResourceStatus whose JSON is
// b, as the object or, for Table, as a one-row Table.
func (s *Server) writeStatusEvent(bw interface{ Write([]byte) (int, error) }, typ string, b []byte, obj *krmv1alpha1.ResourceStatus, f format, includeObject string) error {
	if f == formatTable {
		t, err := s.krmTable(obj, includeObject)
		if err != nil {
			return err
		}
		if b, err = json.Marshal(t); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	buf.Grow(len(b) + 32)
	buf.WriteString(`{"type":"`)
	buf.WriteString(typ)
	buf.WriteString(`","object":`)
	buf.Write(b)
	buf.WriteString("}\n")
	_, err := bw.Write(buf.Bytes())
	return err
}
