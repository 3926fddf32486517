// Package watchproxy is a reverse proxy for tests that stands between a
// client (the agent) and kube-apiserver and does to watches, on demand, what
// networks and servers do to real ones: drop chosen events or a random share
// of them, cut the open watches, hold new ones, stall open ones silently,
// answer a resumed watch 410 Gone, and fail LISTs.
package watchproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Proxy stands between a client and kube-apiserver and forwards every
// request. On watches it can do what networks and servers do to a real
// watch, to order: drop chosen events, cut the open watches, and hold new
// ones until released.
type Proxy struct {
	upstream *url.URL
	rt       http.RoundTripper
	// drop says which watch events never reach the agent.
	drop func(typ, name string) bool
	srv  *httptest.Server

	mu      sync.Mutex
	open    map[*forwarded]struct{}
	gate    chan struct{} // non-nil: new watches wait until it closes
	held    int
	dropped []Event
	watches []string // the resourceVersion each watch asked for, in order
	// failLists is how many of the next LISTs fail with 500.
	failLists int
	// refuse: every request's connection is closed unanswered, as by a
	// kube-apiserver that is down.
	refuse bool
	// pagedLists counts the non-watch GETs with a limit: paginated LISTs.
	pagedLists int
	// lag delays every watch event by this much, as a slow network or a
	// busy kube-apiserver does.
	lag time.Duration
	// dropRate is the share of ADDED, MODIFIED and DELETED events dropped
	// at random, besides those drop chooses.
	dropRate float64
	// gone is how many of the next resumed watches (with a
	// resourceVersion) are answered 410 Gone.
	gone int
}

// forwarded is a watch being forwarded.
type forwarded struct {
	cancel context.CancelFunc
	// flowing: its response began; cut: Cut ended it (it may take a moment
	// to go).
	flowing, cut bool
	// stall non-nil: the watch delivers nothing until it closes.
	stall chan struct{}
}

// Event is a watch event as the proxy saw it.
type Event struct {
	Type string
	Name string
}

// New starts a proxy to the kube-apiserver of cfg, authenticating
// as cfg does. drop may be nil.
func New(t testing.TB, cfg *rest.Config, drop func(typ, name string) bool) *Proxy {
	t.Helper()
	p, err := Start(cfg, drop)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// Start starts a proxy outside a test (the fault suite's command); Close
// stops it.
func Start(cfg *rest.Config, drop func(typ, name string) bool) (*Proxy, error) {
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, err
	}
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, err
	}
	p := &Proxy{upstream: upstream, rt: rt, drop: drop, open: map[*forwarded]struct{}{}}
	p.srv = httptest.NewServer(p)
	return p, nil
}

// Close lets held and stalled watches go, cuts every watch and stops the
// proxy.
func (p *Proxy) Close() {
	p.Release()
	p.Unstall()
	p.Cut()
	p.srv.Close()
}

// URL is the proxy's plain-HTTP address.
func (p *Proxy) URL() string { return p.srv.URL }

// DropRate makes the proxy drop this share (0 to 1) of the ADDED, MODIFIED
// and DELETED events of every watch, at random; 0 stops it.
func (p *Proxy) DropRate(rate float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropRate = rate
}

// StallOpen makes every watch open now deliver nothing more, not even a
// bookmark, while its connection stays open, as a stuck server or a
// half-dead connection would; watches opened later flow. It returns how
// many it stalled. Unstall lets them go on, losing nothing.
func (p *Proxy) StallOpen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for fw := range p.open {
		if fw.stall == nil && !fw.cut {
			fw.stall = make(chan struct{})
			n++
		}
	}
	return n
}

// Unstall lets the watches StallOpen stalled go on.
func (p *Proxy) Unstall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for fw := range p.open {
		if fw.stall != nil {
			select {
			case <-fw.stall:
			default:
				close(fw.stall)
			}
		}
	}
}

// Gone makes the next n watches that resume from a resourceVersion get a
// 410 Gone ERROR event and end, as kube-apiserver answers a watch from a
// compacted resourceVersion.
func (p *Proxy) Gone(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gone = n
}

func (p *Proxy) takeGone(rv string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone == 0 || rv == "" || rv == "0" {
		return false
	}
	p.gone--
	return true
}

// goneEvent is what kube-apiserver's watch cache sends for a
// resourceVersion older than it holds.
func goneEvent(rv string) []byte {
	status := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"too old resource version: %s (proxy: compacted on purpose)","reason":"Expired","code":410}`, rv)
	return []byte(`{"type":"ERROR","object":` + status + "}\n")
}

// randomDrop reports whether to drop an event of type typ at dropRate.
func (p *Proxy) randomDrop(typ string) bool {
	if typ != "ADDED" && typ != "MODIFIED" && typ != "DELETED" {
		return false
	}
	p.mu.Lock()
	rate := p.dropRate
	p.mu.Unlock()
	return rate > 0 && rand.Float64() < rate
}

// waitStall blocks while the watch is stalled; false when ctx ended first.
func (p *Proxy) waitStall(ctx context.Context, fw *forwarded) bool {
	p.mu.Lock()
	stall := fw.stall
	p.mu.Unlock()
	if stall == nil {
		return true
	}
	select {
	case <-stall:
		return true
	case <-ctx.Done():
		return false
	}
}

// RESTConfig is the agent's configuration to reach kube-apiserver through
// the proxy: plain HTTP, the proxy authenticates.
func (p *Proxy) RESTConfig() *rest.Config {
	return &rest.Config{Host: p.srv.URL, QPS: 500, Burst: 1000}
}

// hopHeaders are the headers of one connection, not to be forwarded.
// Accept-Encoding is dropped so that the proxy's transport decompresses and
// watch events can be read line by line.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Accept-Encoding", "Content-Length",
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	refuse := p.refuse
	p.mu.Unlock()
	if refuse {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
		return
	}
	q := r.URL.Query()
	watching := q.Get("watch") == "true" || q.Get("watch") == "1"
	ctx := r.Context()
	var fw *forwarded
	if !watching && r.Method == http.MethodGet && q.Has("limit") {
		p.mu.Lock()
		p.pagedLists++
		p.mu.Unlock()
	}
	if !watching && r.Method == http.MethodGet && p.failList() {
		http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"proxy: failing this LIST on purpose","code":500}`, http.StatusInternalServerError)
		return
	}
	if watching {
		if !p.pass(ctx, q.Get("resourceVersion")) {
			return
		}
		if rv := q.Get("resourceVersion"); p.takeGone(rv) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(goneEvent(rv))
			return
		}
		fw = &forwarded{}
		ctx, fw.cancel = context.WithCancel(ctx)
		defer fw.cancel()
		p.mu.Lock()
		p.open[fw] = struct{}{}
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			delete(p.open, fw)
			p.mu.Unlock()
		}()
	}

	out := r.Clone(ctx)
	out.RequestURI, out.Host = "", ""
	u := *p.upstream
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	out.URL = &u
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.WriteHeader(resp.StatusCode)
	if !watching || resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	// A WatchList (sendInitialEvents) is a verifier reading the whole
	// collection: drop, which stands for events the stream misses, spares
	// it, as it spares LISTs.
	p.relay(ctx, r.Context(), fw, w, resp.Body, q.Get("sendInitialEvents") != "true")
}

// Refuse makes the proxy close every new request's connection unanswered
// (true), as a kube-apiserver that is down, or forward again (false); it
// also cuts the watches open.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	p.refuse = on
	p.mu.Unlock()
	if on {
		p.Cut()
	}
}

// FailLists makes the next n non-watch GETs (LISTs) fail with 500.
func (p *Proxy) FailLists(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failLists = n
}

func (p *Proxy) failList() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failLists == 0 {
		return false
	}
	p.failLists--
	return true
}

// pass lets a watch through, after waiting while watches are held. It
// reports false when the client gave up waiting.
func (p *Proxy) pass(ctx context.Context, rv string) bool {
	p.mu.Lock()
	p.watches = append(p.watches, rv)
	gate := p.gate
	if gate != nil {
		p.held++
	}
	p.mu.Unlock()
	if gate == nil {
		return true
	}
	defer func() {
		p.mu.Lock()
		p.held--
		p.mu.Unlock()
	}()
	select {
	case <-gate:
		return true
	case <-ctx.Done():
		return false
	}
}

// relay copies a watch's events, one JSON object per line, flushing each and
// leaving out the ones to drop. When the watch is cut (ctx ends but the
// client's request goes on) it breaks the connection, as a network failure
// would.
func (p *Proxy) relay(ctx, client context.Context, fw *forwarded, w http.ResponseWriter, body io.Reader, dropping bool) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	p.mu.Lock()
	fw.flowing = true
	p.mu.Unlock()
	type line struct {
		b  []byte
		at time.Time
	}
	lines := make(chan line, 4096)
	go func() {
		defer close(lines)
		br := bufio.NewReaderSize(body, 64<<10)
		for {
			b, err := br.ReadBytes('\n')
			if err != nil {
				return
			}
			select {
			case lines <- line{b, time.Now()}:
			case <-ctx.Done():
				return
			}
		}
	}()
	end := func() {
		if ctx.Err() != nil && client.Err() == nil {
			panic(http.ErrAbortHandler)
		}
	}
	for {
		var l line
		var ok bool
		select {
		case l, ok = <-lines:
		case <-ctx.Done():
		}
		if !ok {
			end()
			return
		}
		// A line read before or during a stall is held until it ends.
		if !p.waitStall(ctx, fw) {
			if client.Err() == nil {
				panic(http.ErrAbortHandler)
			}
			return
		}
		if dropping && (p.drop != nil || p.randomDropOn()) {
			if typ, name, ok := eventName(l.b); ok && ((p.drop != nil && p.drop(typ, name)) || p.randomDrop(typ)) {
				p.mu.Lock()
				p.dropped = append(p.dropped, Event{Type: typ, Name: name})
				p.mu.Unlock()
				continue
			}
		}
		p.mu.Lock()
		lag := p.lag
		p.mu.Unlock()
		if wait := time.Until(l.at.Add(lag)); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				end()
				return
			}
		}
		if _, err := w.Write(l.b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// Lag delays every watch event by d from when the proxy read it (0: none).
func (p *Proxy) Lag(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lag = d
}

func (p *Proxy) randomDropOn() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropRate > 0
}

// eventName reads a watch event's type and its object's name. A Table watch
// (the agent's, for kinds whose cells it takes from kube-apiserver) carries
// the object in its one row.
func eventName(line []byte) (typ, name string, ok bool) {
	type meta struct {
		Name string `json:"name"`
	}
	var ev struct {
		Type   string `json:"type"`
		Object struct {
			Metadata meta `json:"metadata"`
			Rows     []struct {
				Object struct {
					Metadata meta `json:"metadata"`
				} `json:"object"`
			} `json:"rows"`
		} `json:"object"`
	}
	if json.Unmarshal(line, &ev) != nil {
		return "", "", false
	}
	name = ev.Object.Metadata.Name
	if name == "" && len(ev.Object.Rows) > 0 {
		name = ev.Object.Rows[0].Object.Metadata.Name
	}
	return ev.Type, name, true
}

// Cut ends every watch being forwarded and returns how many it ended.
func (p *Proxy) Cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for fw := range p.open {
		if !fw.cut {
			fw.cancel()
			fw.cut = true
			n++
		}
	}
	return n
}

// Hold makes new watches wait until Release.
func (p *Proxy) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
}

// Release lets held and new watches through.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// Established counts the watches whose events are flowing to the agent.
func (p *Proxy) Established() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for fw := range p.open {
		if fw.flowing && !fw.cut {
			n++
		}
	}
	return n
}

// Held counts the watches waiting for Release.
func (p *Proxy) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// Dropped returns the events dropped so far, in order.
func (p *Proxy) Dropped() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.dropped...)
}

// PagedLists counts the paginated LISTs (GETs with a limit) forwarded.
func (p *Proxy) PagedLists() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pagedLists
}

// Watches returns the resourceVersion each watch request asked for, in
// order.
func (p *Proxy) Watches() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.watches...)
}

// Kubeconfig writes a kubeconfig that reaches kube-apiserver through the
// proxy (plain HTTP, no credentials: the proxy has them), for a process
// such as the real agent binary.
func (p *Proxy) Kubeconfig(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := p.WriteKubeconfig(path); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteKubeconfig writes Kubeconfig's file to path, outside a test.
func (p *Proxy) WriteKubeconfig(path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["proxy"] = &clientcmdapi.Cluster{Server: p.srv.URL}
	kc.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "proxy"}
	kc.CurrentContext = "proxy"
	return clientcmd.WriteToFile(*kc, path)
}
