package api

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/krm-project/krm/pkg/store"
)

// ServerOptions configure a Server. The zero value works.
type ServerOptions struct {
	// AgentVersion is sent in every response's X-Krm-Agent-Version header.
	AgentVersion string
	// Registry receives the server's request metrics; nil registers none.
	Registry prometheus.Registerer
	// Gatherer is served on /metrics; nil serves prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// Now is the clock used for staleness and stream lag; nil is time.Now.
	Now func() time.Time
	// Logger receives the few things worth logging (failed writes); nil
	// discards them.
	Logger *slog.Logger
	// Delay serves /api/v1/delay; nil answers 404.
	Delay DelaySource
}

// Server serves the krm HTTP API from a Backend.
type Server struct {
	backend Backend
	version string
	now     func() time.Time
	log     *slog.Logger
	metrics *metrics
	mux     *http.ServeMux

	delaySource DelaySource
}

// NewServer returns a Server reading from b.
func NewServer(b Backend, opts ServerOptions) *Server {
	s := &Server{
		backend: b,
		version: opts.AgentVersion,
		now:     opts.Now,
		log:     opts.Logger,
		mux:     http.NewServeMux(),

		delaySource: opts.Delay,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if opts.Registry != nil {
		s.metrics = newMetrics(opts.Registry, s.log)
	}
	gatherer := opts.Gatherer
	if gatherer == nil {
		gatherer = prometheus.DefaultGatherer
	}

	s.handle("GET /healthz", "healthz", s.healthz)
	s.handle("GET /readyz", "readyz", s.readyz)
	s.handle("GET /metrics", "metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}).ServeHTTP)
	s.handle("GET /api/v1/resources", "resources", s.resources)
	s.handle("GET /api/v1/delay", "delay", s.delay)
	// The list route serves watches too; the route label is corrected
	// once the query says which it is.
	s.handle("GET /api/v1/resources/{resource}", "list", s.listOrWatch)
	s.handle("GET /api/v1/resources/{resource}/drift", "drift", s.drift)
	s.handle("GET /api/v1/resources/{resource}/{name}", "get", s.getClusterScoped)
	s.handle("GET /api/v1/resources/{resource}/namespaces/{namespace}/{name}", "get", s.getNamespaced)
	return s
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(HeaderAgentVersion, s.version)
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.unmatched(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// unmatched answers requests no route takes, in JSON like every other error.
// ServeMux alone knows whether the path exists for another method, so its
// own (plain-text) answer is run on the side to learn the status and Allow.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h, _ := s.mux.Handler(r)
	probe := &probeWriter{header: make(http.Header)}
	h.ServeHTTP(probe, r)

	rec := &recorder{ResponseWriter: w}
	if probe.status == http.StatusMethodNotAllowed {
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeError(rec, http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s; use %s", r.Method, r.URL.Path, allow))
	} else {
		writeError(rec, http.StatusNotFound, fmt.Sprintf("no such path %s: the API serves /api/%s/resources (and the paths below it) and /api/%s/delay", r.URL.Path, Version, Version))
	}
	s.metrics.observe("unmatched", "", rec.code(), time.Since(start))
}

type probeWriter struct {
	header http.Header
	status int
}

func (p *probeWriter) Header() http.Header         { return p.header }
func (p *probeWriter) Write(b []byte) (int, error) { return len(b), nil }
func (p *probeWriter) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}

// handle registers h for pattern, counted under route.
func (s *Server) handle(pattern, route string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, route: route}
		h(rec, r)
		s.metrics.observe(rec.route, rec.resource, rec.code(), time.Since(start))
	})
}

// recorder remembers the status for the metrics and lets handlers name the
// resource and route they served.
type recorder struct {
	http.ResponseWriter
	status   int
	route    string
	resource string
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the Flusher underneath.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

// label sets the metric labels of the request being served by w.
func label(w http.ResponseWriter, route, resource string) {
	if rec, ok := w.(*recorder); ok {
		if route != "" {
			rec.route = route
		}
		rec.resource = resource
	}
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	ok, why := s.backend.Ready()
	if !ok {
		writeText(w, http.StatusServiceUnavailable, why)
		return
	}
	if why == "" {
		why = "ok"
	}
	writeText(w, http.StatusOK, why)
}

func (s *Server) resources(w http.ResponseWriter, r *http.Request) {
	if err := rejectQuery(r.URL.Query()); err != nil {
		writeErr(w, err)
		return
	}
	list := s.backend.Resources()
	list.AgentVersion = s.version
	if list.Resources == nil {
		list.Resources = []ResourceStatus{}
	}
	s.writeJSON(w, http.StatusOK, list)
}

func (s *Server) drift(w http.ResponseWriter, r *http.Request) {
	res, ok := s.resource(w, r)
	if !ok {
		return
	}
	if err := rejectQuery(r.URL.Query()); err != nil {
		writeErr(w, err)
		return
	}
	s.setFreshness(w, res.Snapshot(store.Aggregated))
	report := res.Drift()
	if report.Ledger == nil {
		report.Ledger = []DriftEntry{}
	}
	if report.Unverified == nil {
		report.Unverified = []UnverifiedChange{}
	}
	s.writeJSON(w, http.StatusOK, report)
}

// resource resolves the {resource} path value, answering 404 when the agent
// does not watch it.
func (s *Server) resource(w http.ResponseWriter, r *http.Request) (Resource, bool) {
	name := r.PathValue("resource")
	res, ok := s.backend.Resource(name)
	if !ok {
		// An unknown name must not become a label value: anyone could
		// mint new time series with a loop of requests.
		label(w, "", "unknown")
		var names []string
		for _, st := range s.backend.Resources().Resources {
			names = append(names, st.Name)
		}
		watched := strings.Join(names, ", ")
		if watched == "" {
			watched = "none"
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("resource %q is not watched by this agent; watched resources: %s", name, watched))
		return nil, false
	}
	label(w, "", res.Info().Name)
	return res, true
}

// setFreshness sets the headers that tell a reader how fresh snap is.
func (s *Server) setFreshness(w http.ResponseWriter, snap *Snapshot) {
	h := w.Header()
	if !snap.Header.VerifiedAt.IsZero() {
		h.Set(HeaderVerifiedAt, snap.Header.VerifiedAt.UTC().Format(time.RFC3339Nano))
	}
	h.Set(HeaderResourceVersion, store.FormatResourceVersion(snap.Header.ResourceVersion))
	if snap.Stale {
		h.Set(HeaderStale, "true")
	}
	switch {
	case !snap.StreamConnected:
		h.Set(HeaderStreamLag, "disconnected")
	case !snap.LastStreamAt.IsZero():
		// A connected watch that has not spoken yet has no lag to tell.
		lag := max(s.now().Sub(snap.LastStreamAt), 0)
		h.Set(HeaderStreamLag, lag.Round(time.Millisecond).String())
	}
}

// checkStaleness refuses a snapshot verified longer than maxStaleness ago.
func (s *Server) checkStaleness(info ResourceInfo, snap *Snapshot, maxStaleness time.Duration) error {
	if maxStaleness <= 0 {
		return nil
	}
	at := snap.Header.VerifiedAt
	if at.IsZero() {
		return &Error{Status: http.StatusServiceUnavailable, Message: fmt.Sprintf("%s have not been verified yet, so maxStaleness=%s cannot be met", info.Name, maxStaleness)}
	}
	age := s.now().Sub(at)
	if age <= maxStaleness {
		return nil
	}
	round := time.Second
	if age < 10*time.Second {
		round = time.Millisecond
	}
	return &Error{Status: http.StatusServiceUnavailable, Message: fmt.Sprintf("%s were last verified %s ago, older than maxStaleness=%s", info.Name, age.Round(round), maxStaleness)}
}

func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encoding response", "type", fmt.Sprintf("%T", v), "err", err)
		writeError(w, http.StatusInternalServerError, "the agent could not encode its answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b = append(b, '\n')
	if _, err := w.Write(b); err != nil {
		s.log.Debug("writing response", "err", err)
	}
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

// writeErr answers with err, which is an *Error for anything the caller got
// wrong and a 500 otherwise.
func writeErr(w http.ResponseWriter, err error) {
	if e, ok := err.(*Error); ok {
		writeError(w, e.Status, e.Message)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

func writeError(w http.ResponseWriter, status int, message string) {
	// Marshalling a struct of an int and a string cannot fail.
	b, _ := json.Marshal(Error{Status: status, Message: message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	// Errors must not be cached by a proxy in front of a port-forward.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func badRequest(format string, args ...any) *Error {
	// Selector parsers quote the caller's bytes raw in their errors; a
	// message must stay valid text whatever was sent.
	msg := strings.ToValidUTF8(fmt.Sprintf(format, args...), "\uFFFD")
	return &Error{Status: http.StatusBadRequest, Message: msg}
}
