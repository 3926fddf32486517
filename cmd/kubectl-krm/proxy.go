package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

const proxyExample = `  # Serve the agent's API on 127.0.0.1:8001, and read through it with kubectl
  kubectl krm proxy &
  kubectl --server http://127.0.0.1:8001 get pods -A

  # Listen on a free port
  kubectl krm proxy --port 0`

// Timeouts that keep every proxied request bounded until the agent has
// answered with its headers; a watch's body then streams as long as both
// ends keep it open.
const (
	// proxyConnectTimeout bounds one attempt to find the agent pod, open a
	// port-forward and check the agent.
	proxyConnectTimeout = 30 * time.Second
	// proxyRequestWait is how long a request waits for a reconnect attempt
	// in progress before it is answered 503.
	proxyRequestWait = 15 * time.Second
	// proxyShutdownGrace lets requests in flight finish after a signal;
	// watches never do, so they are cut after it.
	proxyShutdownGrace = 2 * time.Second
)

// proxyBackoff spaces reconnect attempts while the agent is unreachable. The
// cap is short because a user is waiting; an attempt is one pod LIST and
// one port-forward.
var proxyBackoff = wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 16, Cap: 8 * time.Second}

// ProxyOptions are the flags of `kubectl krm proxy`.
type ProxyOptions struct {
	configFlags *genericclioptions.ConfigFlags
	agent       *AgentFlags
	genericiooptions.IOStreams

	port    int
	address string
	listen  string // address:port
	// serving is the line printed once the proxy listens on addr.
	serving func(addr net.Addr) string
}

// proxyServing is kubectl proxy's line.
func proxyServing(addr net.Addr) string { return fmt.Sprintf("Starting to serve on %s", addr) }

// NewCmdProxy builds `kubectl krm proxy`.
func NewCmdProxy(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ProxyOptions{configFlags: cf, agent: agent, IOStreams: streams, port: 8001, address: "127.0.0.1", serving: proxyServing}
	cmd := &cobra.Command{
		Use:   "proxy [--port=PORT] [--address=ADDRESS]",
		Short: "Serve the krm agent's API on a local port, as kubectl proxy serves the API server's",
		Long: `Serve the krm agent's whole HTTP API on a local address, as kubectl proxy
serves the API server's: every method, path and query is passed to the agent
unchanged, through a port-forward to its pod (or to --agent-url), and its
answers, watches and X-Krm-* freshness headers come back as they are.

When the agent pod changes or the port-forward dies, the proxy finds the pod
again and opens a new port-forward. While it cannot reach the agent it answers
503 with a Kubernetes Status saying why.

On a loopback address only requests for localhost, 127.0.0.1 or [::1] are
served, as kubectl proxy does, so that web pages cannot reach the cache by
rebinding a DNS name. Listening on another address serves anyone who can
reach it.`,
		Example: proxyExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().IntVarP(&o.port, "port", "p", o.port, "The port on which to run the proxy. Set to 0 to pick a random port.")
	cmd.Flags().StringVar(&o.address, "address", o.address, "The IP address on which to serve on.")
	return cmd
}

// Complete joins the address and port.
func (o *ProxyOptions) Complete(_ *cobra.Command, _ []string) error {
	o.listen = net.JoinHostPort(o.address, strconv.Itoa(o.port))
	return nil
}

// Validate checks --port and --address.
func (o *ProxyOptions) Validate() error {
	if o.port < 0 || o.port > 65535 {
		return fmt.Errorf("--port must be between 0 and 65535 (0 picks a free port), got %d", o.port)
	}
	if isHost(o.address) {
		return nil
	}
	if host, port, err := net.SplitHostPort(o.address); err == nil && isHost(host) {
		if _, err := strconv.ParseUint(port, 10, 16); err == nil {
			return fmt.Errorf("--address %q has a port; give the address alone and the port with --port", o.address)
		}
	}
	return fmt.Errorf("--address %q is neither an IP address nor a host name; give the address to listen on, e.g. 127.0.0.1 or 0.0.0.0", o.address)
}

// isHost says whether s is an IP address or a host name.
func isHost(s string) bool {
	return net.ParseIP(s) != nil || len(validation.IsDNS1123Subdomain(strings.ToLower(s))) == 0
}

// Run listens, reaches the agent, and serves until ctx is done.
func (o *ProxyOptions) Run(ctx context.Context) error {
	l, err := net.Listen("tcp", o.listen)
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listening on %s: %w; choose another port with --port, or --port 0 for a free one", o.listen, err)
	}
	if err != nil {
		return fmt.Errorf("listening on %s: %w", o.listen, err)
	}
	defer l.Close()

	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(o.ErrOut, format+"\n", args...)
	}
	up := newAgentUpstream(o.dial, o.unreachableHint(), logf)
	// Port-forwards outlive ctx until the server has shut down, so that
	// requests in flight can finish; a signal while connecting still stops.
	upCtx, stopUp := context.WithCancel(context.WithoutCancel(ctx))
	defer stopUp()
	stopConnecting := context.AfterFunc(ctx, stopUp)
	if err := up.attempt(upCtx); err != nil {
		return err
	}
	stopConnecting()
	var wg sync.WaitGroup
	wg.Go(func() { up.run(upCtx) })
	defer wg.Wait()
	defer stopUp()

	srv := &http.Server{
		Handler:           newProxyHandler(up, isLoopback(o.address)),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	logMu.Lock()
	_, err = fmt.Fprintln(o.Out, o.serving(l.Addr()))
	logMu.Unlock()
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return fmt.Errorf("serving on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	// ctx is done: the grace period needs a context of its own.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), proxyShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-served
	return nil
}

// dial reaches the agent once. The port-forward lives until the returned
// connection is dropped or ctx is done.
func (o *ProxyOptions) dial(ctx context.Context) (*agentConn, error) {
	fctx, stop := context.WithCancel(ctx)
	timer := time.AfterFunc(proxyConnectTimeout, stop)
	opts := o.agent.options()
	// Pass the agent's bytes and Content-Encoding through as they are.
	opts.DisableCompression = true
	conn, err := o.agent.connectWith(fctx, o.configFlags, opts)
	if !timer.Stop() {
		stop()
		if err == nil || ctx.Err() == nil {
			err = fmt.Errorf("reaching the krm agent took longer than %s", proxyConnectTimeout)
		}
		return nil, err
	}
	if err != nil {
		stop()
		return nil, err
	}
	u, err := url.Parse(conn.URL)
	if err != nil {
		stop()
		return nil, fmt.Errorf("the krm agent's URL %q: %w", conn.URL, err)
	}
	return &agentConn{url: u, pod: conn.Pod, rt: conn.Transport, stop: stop}, nil
}

// unreachableHint says what to check when the agent cannot be reached.
func (o *ProxyOptions) unreachableHint() string {
	if o.agent.URL != "" {
		return fmt.Sprintf("check that the agent at --agent-url %s is running and answers /healthz", o.agent.URL)
	}
	return fmt.Sprintf("check that an agent pod is Running and Ready (`kubectl -n %s get pods -l %s`) and that you may create pods/portforward in %[1]s",
		o.agent.Namespace, o.agent.Selector)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// agentConn is one way to the agent: a port-forward to its pod, or
// --agent-url.
type agentConn struct {
	url *url.URL
	pod string // namespace/name; empty with --agent-url
	// rt sends the user's credentials to an https --agent-url, as kubectl
	// proxy sends them to the API server; nil for a port-forward or an
	// http URL, which take none and share the proxy's transport.
	rt http.RoundTripper
	// stop ends the port-forward.
	stop context.CancelFunc
}

func (c *agentConn) String() string {
	if c.pod != "" {
		return fmt.Sprintf("pod %s through %s", c.pod, c.url)
	}
	return c.url.String()
}

// agentUpstream holds the current connection to the agent and replaces it
// when a request finds it broken.
type agentUpstream struct {
	dial func(ctx context.Context) (*agentConn, error)
	hint string
	logf func(format string, args ...any)
	// wait bounds how long a request waits for a reconnect attempt.
	wait time.Duration
	// reconnect wakes run when the connection breaks.
	reconnect chan struct{}

	mu   sync.Mutex
	conn *agentConn // nil while the agent is unreachable
	err  error      // why conn is nil
	// dialing is true from a break until the attempt it triggers ends, and
	// during every later attempt; between attempts requests fail at once.
	dialing bool
	// attempted is closed, and replaced, each time an attempt ends.
	attempted chan struct{}
	// lost is true from a break until the next connection.
	lost bool
}

func newAgentUpstream(dial func(context.Context) (*agentConn, error), hint string, logf func(string, ...any)) *agentUpstream {
	return &agentUpstream{
		dial: dial, hint: hint, logf: logf, wait: proxyRequestWait,
		reconnect: make(chan struct{}, 1),
		err:       errors.New("not connected yet"),
		attempted: make(chan struct{}),
	}
}

// run reconnects, with backoff, each time the connection breaks, until
// ctx is done; then it drops the connection.
func (u *agentUpstream) run(ctx context.Context) {
	defer u.drop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.reconnect:
		}
		_ = proxyBackoff.DelayFunc().Until(ctx, true, false, func(ctx context.Context) (bool, error) {
			return u.attempt(ctx) == nil, nil
		})
	}
}

// attempt dials the agent once and makes the result current.
func (u *agentUpstream) attempt(ctx context.Context) error {
	u.mu.Lock()
	u.dialing = true
	u.mu.Unlock()
	c, err := u.dial(ctx)
	u.mu.Lock()
	defer u.mu.Unlock()
	u.dialing = false
	if err == nil {
		if u.conn != nil {
			u.conn.stop()
		}
		if u.lost {
			u.logf("reconnected to the krm agent (%s)", c)
		}
		u.conn, u.err, u.lost = c, nil, false
	} else {
		u.err = err
	}
	close(u.attempted)
	u.attempted = make(chan struct{})
	return err
}

// current returns the connection, waiting for a reconnect attempt in
// progress, within limits; otherwise an *unreachableError.
func (u *agentUpstream) current(ctx context.Context) (*agentConn, error) {
	u.mu.Lock()
	c, dialing, attempted := u.conn, u.dialing, u.attempted
	u.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if dialing {
		t := time.NewTimer(u.wait)
		defer t.Stop()
		select {
		case <-attempted:
		case <-t.C:
			u.mu.Lock()
			err := u.err
			u.mu.Unlock()
			return nil, &unreachableError{err: fmt.Errorf("still reconnecting after %s; before that: %w", u.wait, err), hint: u.hint}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil {
		return u.conn, nil
	}
	return nil, &unreachableError{err: u.err, hint: u.hint}
}

// broken reports that c failed with err. The first report for the current
// connection drops it and wakes run; later ones change nothing.
func (u *agentUpstream) broken(c *agentConn, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != c {
		return
	}
	c.stop()
	u.conn, u.err, u.dialing, u.lost = nil, err, true, true
	u.logf("lost the krm agent (%s): %v; reconnecting", c, err)
	select {
	case u.reconnect <- struct{}{}:
	default:
	}
}

func (u *agentUpstream) drop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.conn != nil {
		u.conn.stop()
		u.conn, u.err = nil, errors.New("the proxy is shutting down")
	}
	u.dialing = false
}

// unreachableError is the answer while the agent cannot be reached.
type unreachableError struct {
	err  error
	hint string
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("the krm agent is unreachable (kubectl krm proxy keeps reconnecting): %v; %s", e.err, e.hint)
}

func (e *unreachableError) Unwrap() error { return e.err }

// agentTransport sends each request to the current connection. When that
// fails, it reports the connection broken and, where sending again is
// safe, sends the request once more over the next one.
type agentTransport struct {
	up *agentUpstream
	// base carries the connections that have no round tripper of their
	// own.
	base *http.Transport
}

func (t *agentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, c, err := t.send(req)
	if err == nil || req.Context().Err() != nil {
		return resp, err
	}
	var unreachable *unreachableError
	if errors.As(err, &unreachable) {
		return nil, err
	}
	t.up.broken(c, err)
	t.base.CloseIdleConnections()
	if c != nil && c.rt != nil {
		utilnet.CloseIdleConnectionsFor(c.rt)
	}
	if !replayable(req, err) {
		return nil, &unreachableError{err: err, hint: t.up.hint}
	}
	resp, c, err = t.send(req)
	if err != nil && !errors.As(err, &unreachable) && req.Context().Err() == nil {
		t.up.broken(c, err)
		return nil, &unreachableError{err: err, hint: t.up.hint}
	}
	return resp, err
}

// send sends req to the current connection, with req's path and query
// below the connection's URL.
func (t *agentTransport) send(req *http.Request) (*http.Response, *agentConn, error) {
	c, err := t.up.current(req.Context())
	if err != nil {
		return nil, nil, err
	}
	pr := &httputil.ProxyRequest{Out: req.Clone(req.Context())}
	pr.SetURL(c.url)
	rt := http.RoundTripper(t.base)
	if c.rt != nil {
		rt = c.rt
	}
	resp, err := rt.RoundTrip(pr.Out)
	if err != nil {
		return nil, c, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		resp.Body = &watchedBody{ReadCloser: resp.Body, broken: func(err error) {
			if req.Context().Err() == nil {
				t.up.broken(c, err)
			}
		}}
	}
	return resp, c, nil
}

// replayable says whether req may be sent again after err: it has no body,
// and either it never reached the agent or its method is idempotent. A
// timeout is not retried, so that a request waits for one at most.
func replayable(req *http.Request, err error) bool {
	if req.Body != nil && req.Body != http.NoBody {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

// watchedBody reports a response body that breaks off, as a watch does when
// its port-forward dies, so the next request does not wait to find out.
type watchedBody struct {
	io.ReadCloser
	broken func(error)
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		b.broken(err)
	}
	return n, err
}

// newProxyHandler serves every request through up. With loopbackOnly it
// refuses Host headers other than loopback names, as kubectl proxy does.
func newProxyHandler(up *agentUpstream, loopbackOnly bool) http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// agentTransport sets the agent's URL, which can change
			// between attempts; the agent sees its own host.
			pr.Out.Host = ""
		},
		Transport: &agentTransport{up: up, base: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   32,
			ForceAttemptHTTP2:     true,
			// Pass the agent's bytes and Content-Encoding through as they are.
			DisableCompression: true,
		}},
		// Watch events go out as they arrive.
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the client has gone
			}
			var unreachable *unreachableError
			if !errors.As(err, &unreachable) {
				err = &unreachableError{err: err, hint: up.hint}
			}
			writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error())
		},
	}
	if !loopbackOnly {
		return rp
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if !isLoopback(host) {
			writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
				fmt.Sprintf("kubectl krm proxy on a loopback address serves only requests for localhost, 127.0.0.1 or [::1], not %q", r.Host))
			return
		}
		rp.ServeHTTP(w, r)
	})
}

// writeStatus answers with a Kubernetes Status, as the agent does.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, message string) {
	s := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  message,
		Reason:   reason,
		Code:     int32(code),
	}
	if code == http.StatusServiceUnavailable {
		// client-go retries a request answered with Retry-After, so kubectl
		// rides out a reconnect.
		s.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(s)
}
