package load

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// watchers is what the reading watchers saw.
type watchers struct {
	mu     sync.Mutex
	n      int
	events int
	errors int
	first  error
}

// WatchStats are the reading watchers' figures.
type WatchStats struct {
	Watchers, Events, Errors int
	FirstError               string
}

// startWatchers starts the watchers that read: three in four as an
// informer watches (JSON, from the LIST's resourceVersion, bookmarks
// allowed), one in four as kubectl get -w (a Table). Each reads every
// event until ctx ends; a stream that ends before, or an ERROR event, is an
// error.
func (r *run) startWatchers(ctx context.Context, wg *sync.WaitGroup, rv string) *watchers {
	ws := &watchers{n: r.cfg.Watchers - r.cfg.Stalled}
	for i := range ws.n {
		table := i%4 == 3
		wg.Go(func() {
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			defer hc.CloseIdleConnections()
			events, err := r.watch(ctx, hc, rv, table)
			ws.mu.Lock()
			defer ws.mu.Unlock()
			ws.events += events
			if err != nil {
				ws.errors++
				if ws.first == nil {
					ws.first = err
				}
			}
		})
	}
	return ws
}

func (r *run) watch(ctx context.Context, hc *http.Client, rv string, table bool) (int, error) {
	q := url.Values{"watch": {"1"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.agent.URL+"/api/v1/namespaces/"+url.PathEscape(r.env.NS)+"/pods?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("User-Agent", "krm-load")
	req.Header.Set("Accept", "application/json")
	if table {
		req.Header.Set("Accept", tableAccept)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil
		}
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return 0, fmt.Errorf("watch: %s: %.200s", resp.Status, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	events := 0
	for sc.Scan() {
		if bytes.HasPrefix(sc.Bytes(), []byte(`{"type":"ERROR"`)) {
			return events, fmt.Errorf("watch: an ERROR event: %.300s", sc.Bytes())
		}
		events++
	}
	if ctx.Err() != nil {
		return events, nil
	}
	return events, fmt.Errorf("watch ended before the run did, after %d events: %v", events, sc.Err())
}

func (ws *watchers) summary() WatchStats {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	s := WatchStats{Watchers: ws.n, Events: ws.events, Errors: ws.errors}
	if ws.first != nil {
		s.FirstError = ws.first.Error()
	}
	return s
}

// stalledSet is the watchers that never read.
type stalledSet struct {
	conns []net.Conn
}

// startStalled opens r.cfg.Stalled watches and never reads them: half
// with the initial events (no resourceVersion, as kubectl get -w starts:
// the whole namespace at once), half from rv (only the changes, which the
// churn sends). Each has a 4 KiB receive buffer, so what the agent can
// send before its writes block is its own socket buffer.
func (r *run) startStalled(ctx context.Context, rv string) (*stalledSet, error) {
	s := &stalledSet{}
	host := strings.TrimPrefix(r.agent.URL, "http://")
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); err != nil {
			return err
		}
		return serr
	}}
	for i := range r.cfg.Stalled {
		q := url.Values{"watch": {"1"}}
		if i%2 == 1 {
			q.Set("resourceVersion", rv)
			q.Set("allowWatchBookmarks", "true")
		}
		conn, err := d.DialContext(ctx, "tcp", host)
		if err != nil {
			s.close()
			return nil, err
		}
		s.conns = append(s.conns, conn)
		if _, err := fmt.Fprintf(conn, "GET /api/v1/namespaces/%s/pods?%s HTTP/1.1\r\nHost: %s\r\nUser-Agent: krm-load (never reads)\r\nAccept: application/json\r\n\r\n",
			url.PathEscape(r.env.NS), q.Encode(), host); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

func (s *stalledSet) close() {
	for _, c := range s.conns {
		_ = c.Close()
	}
}

// StalledStats say what became of the watchers that never read.
type StalledStats struct {
	Watchers int
	// DroppedByAgent is how many more watches the agent counted as dropped
	// for a write timeout than before the run, after at most the wait.
	DroppedByAgent int
	// ClosedByAgent is how many of the stalled connections the agent had
	// closed: read at last, each ends with EOF rather than waiting.
	ClosedByAgent int
	// Waited is how long after the clients left that took.
	Waited time.Duration
}

// waitDropped waits, at most wait, until the agent has counted every
// stalled watcher as dropped for its write timeout, then reads each
// stalled connection to its end to check the agent closed it.
func (s *stalledSet) waitDropped(ctx context.Context, r *run, before metrics, wait time.Duration) (StalledStats, error) {
	st := StalledStats{Watchers: len(s.conns)}
	start := time.Now()
	key := `krm_watches_dropped_total{reason="write-timeout",resource="pods"}`
	for {
		m, err := r.scrape(ctx)
		if err != nil {
			return st, err
		}
		st.DroppedByAgent = int(m[key] - before[key])
		if st.DroppedByAgent >= len(s.conns) || time.Since(start) > wait {
			break
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(time.Second):
		}
	}
	st.Waited = time.Since(start)
	for _, c := range s.conns {
		// What the kernel buffered is read, then the agent's close shows
		// as EOF; a connection still open runs into the deadline.
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			st.ClosedByAgent++
		}
	}
	s.close()
	return st, nil
}
