// Package server serves krm's cache as a read-only Kubernetes API server:
// discovery, GET, LIST and WATCH of every cached resource at the standard
// paths, with kube-apiserver's semantics for selectors, pagination,
// resourceVersion, bookmarks and WatchList, as JSON, Table or
// PartialObjectMetadata. So kubectl, client-go informers, the Python client
// and dashboards read from the agent unchanged.
package server

import (
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"net/http"
	"path"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/version"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/ui"
)

// uiHandler serves the web view's static files under ui.Prefix.
var uiHandler = ui.Handler()

// isUIPath says whether p is the web view's: its files hold no data, so
// they are served without authentication; the view's data comes through
// the API, which is authorized. A path with dot segments is not the view's,
// so that it cannot pass for one on its way to the API.
func isUIPath(p string) bool {
	if p != ui.Prefix && path.Clean(p) != p {
		return false
	}
	return p == strings.TrimSuffix(ui.Prefix, "/") || strings.HasPrefix(p, ui.Prefix)
}

// Options configure a Server. The zero value works.
type Options struct {
	// ClusterVersion is what /version answers: the cluster's own, so
	// clients that check the server's version see the cluster they read.
	ClusterVersion *version.Info
	// APIServer is the URL of the cluster's API server, named in the
	// answer to writes.
	APIServer string
	// Registry receives the request metrics; nil registers none.
	Registry prometheus.Registerer
	// Gatherer is served on /metrics; nil serves prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// AgentVersion is the agent's own version, in its AgentStatus.
	AgentVersion string
	// Delay answers krm.io's delayreports; nil answers 404 there.
	Delay api.DelaySource
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Logger receives what is worth logging; nil discards it.
	Logger *slog.Logger
	// BookmarkInterval is how often a watch that allows bookmarks gets
	// one; default 15s.
	BookmarkInterval time.Duration
	// WaitForResourceVersion is how long a read of a resourceVersion newer
	// than the agent's waits for the agent to catch up before 504, as
	// kube-apiserver's watch cache waits; default 3s.
	WaitForResourceVersion time.Duration
	// MaxWatches bounds the watches served at once; beyond it a watch gets
	// 429 with Retry-After, which client-go backs off on. Default
	// DefaultMaxWatches; each watch holds at most a 4,096-change channel and
	// a 64 KiB write buffer.
	MaxWatches int
	// WriteTimeout bounds each write of a response to its client: a
	// client that stops reading (a LIST or a watch it no longer reads) is
	// let go once one write has blocked this long, instead of pinning its
	// goroutine, buffers and snapshot. Default DefaultWriteTimeout.
	WriteTimeout time.Duration
}

// DefaultWriteTimeout is Options.WriteTimeout's default.
const DefaultWriteTimeout = 30 * time.Second

// DefaultMaxWatches is Options.MaxWatches' default.
const DefaultMaxWatches = 1000

// Server answers the Kubernetes read API from an api.Backend.
type Server struct {
	backend api.Backend
	opts    Options
	log     *slog.Logger
	now     func() time.Time
	pages   *pageCache
	tables  *tableCaches
	metrics *metrics
	// watches counts the watches being served.
	watches atomic.Int64
}

// New returns a Server reading from b.
func New(b api.Backend, opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BookmarkInterval <= 0 {
		opts.BookmarkInterval = 15 * time.Second
	}
	if opts.MaxWatches <= 0 {
		opts.MaxWatches = DefaultMaxWatches
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.WaitForResourceVersion <= 0 {
		opts.WaitForResourceVersion = 3 * time.Second
	}
	s := &Server{
		backend: b,
		opts:    opts,
		log:     opts.Logger,
		now:     opts.Now,
		pages:   newPageCache(opts.Now),
		tables:  newTableCaches(),
	}
	if opts.Registry != nil {
		s.metrics = newMetrics(opts.Registry, opts.Logger)
	}
	return s
}

// Handler returns the HTTP handler for every path the agent serves.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := newRecorder(w, "unmatched", s.opts.WriteTimeout)
	defer rec.clearDeadline()
	s.route(rec, r)
	s.metrics.observe(rec.route, rec.resource, rec.code(), time.Since(start))
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderAgentVersion, s.opts.AgentVersion)
	p := r.URL.Path
	switch p {
	case "/healthz", "/readyz", "/metrics":
		label(w, "health", "")
		if !s.readOnly(w, r, "") {
			return
		}
		switch p {
		case "/healthz":
			s.healthz(w, r)
		case "/readyz":
			s.readyz(w, r)
		default:
			s.metricsHandler().ServeHTTP(w, r)
		}
		return
	}
	switch {
	case isUIPath(p):
		label(w, "ui", "")
		uiHandler.ServeHTTP(w, r)
	case p == "/version" || p == "/version/":
		label(w, "discovery", "")
		if !s.readOnly(w, r, "") {
			return
		}
		s.version(w, r)
	case p == "/api" || p == "/api/":
		label(w, "discovery", "")
		if !s.readOnly(w, r, "") {
			return
		}
		s.coreGroups(w, r)
	case p == "/apis" || p == "/apis/":
		label(w, "discovery", "")
		if !s.readOnly(w, r, "") {
			return
		}
		s.groups(w, r)
	case strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/apis/"):
		s.resourcePath(w, r)
	default:
		s.writeStatus(w, notFound(p))
	}
}

// readOnly answers 405 to anything but a read; resource names what was
// asked for in the message.
func (s *Server) readOnly(w http.ResponseWriter, r *http.Request, resource string) bool {
	return s.readOnlyAt(w, r, resource, false)
}

// readOnlyAt is readOnly for a path that is a collection or not.
func (s *Server) readOnlyAt(w http.ResponseWriter, r *http.Request, resource string, collection bool) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	}
	if rec, ok := w.(*recorder); ok {
		rec.route = "write"
	}
	s.writeStatus(w, s.methodNotAllowed(r, resource, collection))
	return false
}
