package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/connect"
)

// lockedBuffer is written by the proxy while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proxyAgentHandler answers what connect checks (/healthz and krm.io's
// AgentStatus) and hands every other request to h.
func proxyAgentHandler(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /apis/krm.io/v1alpha1/agentstatuses/agent", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(krmv1alpha1.AgentStatus{
			TypeMeta:   metav1.TypeMeta{Kind: "AgentStatus", APIVersion: "krm.io/v1alpha1"},
			ObjectMeta: metav1.ObjectMeta{Name: "agent"},
			Status:     krmv1alpha1.AgentState{AgentVersion: "v1.2.3"},
		})
	})
	mux.Handle("/", h)
	return mux
}

// proxyAgent is an agent for the proxy to forward to, on addr ("" for a
// free port).
func proxyAgent(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(proxyAgentHandler(h))
	if addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = l
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// runningProxy is `kubectl krm proxy` running in the background.
type runningProxy struct {
	url            string // http://address:port
	stdout, stderr *lockedBuffer
	stop           func() error
}

// startProxy runs `kubectl krm proxy --agent-url agentURL args…` until
// stop or the end of the test, and waits for it to serve.
func startProxy(t *testing.T, agentURL string, args ...string) *runningProxy {
	t.Helper()
	p := &runningProxy{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(t.Context())
	cmd := NewCmdKrm(genericiooptions.IOStreams{In: strings.NewReader(""), Out: p.stdout, ErrOut: p.stderr})
	cmd.SetArgs(append([]string{"proxy", "--agent-url", agentURL}, args...))
	cmd.SetOut(p.stdout)
	cmd.SetErr(p.stderr)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	var once sync.Once
	var err error
	p.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = fmt.Errorf("kubectl krm proxy still running 10s after its context ended")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = p.stop() })

	serving := regexp.MustCompile(`^Starting to serve on (\S+)\n$`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := serving.FindStringSubmatch(p.stdout.String()); m != nil {
			p.url = "http://" + m[1]
			return p
		}
		select {
		case err := <-done:
			t.Fatalf("kubectl krm proxy ended before serving: %v\nstdout: %s\nstderr: %s", err, p.stdout, p.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl krm proxy printed %q in 10s, want the line saying where it serves", p.stdout)
		}
	}
}

// exchange is one request as the agent received it.
type exchange struct {
	Method, RequestURI, Body string
	Header                   http.Header
}

func TestProxyForwardsRequestsUnchanged(t *testing.T) {
	var mu sync.Mutex
	var got []exchange
	agent := proxyAgent(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, exchange{Method: r.Method, RequestURI: r.RequestURI, Body: string(body), Header: r.Header.Clone()})
		mu.Unlock()
		w.Header().Set(krmv1alpha1.HeaderVerifiedAt, "2026-03-01T12:00:00Z")
		w.Header().Set(krmv1alpha1.HeaderResourceVersion, "42")
		w.Header().Set(krmv1alpha1.HeaderStale, "true")
		w.Header().Set("Content-Type", "application/json")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
		_, _ = fmt.Fprintf(w, `{"answer":%q}`, r.Method+" "+r.URL.Path)
	}))
	p := startProxy(t, agent.URL, "--port", "0")

	tests := []struct {
		method, path, body string
		status             int
		answer             string
	}{
		{http.MethodGet, "/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb%2Ctier+in+%28a%29&limit=5", "", http.StatusOK, `{"answer":"GET /api/v1/namespaces/shop/pods"}`},
		// Escapes in the path stay as sent.
		{http.MethodGet, "/apis/krm.io/v1alpha1/resources/a%2Fb?watch=true", "", http.StatusOK, `{"answer":"GET /apis/krm.io/v1alpha1/resources/a/b"}`},
		{http.MethodHead, "/api/v1/nodes", "", http.StatusOK, ""},
		// Every method goes through; the agent refuses writes itself.
		{http.MethodPost, "/api/v1/namespaces/shop/configmaps", `{"kind":"ConfigMap"}`, http.StatusMethodNotAllowed, `{"answer":"POST /api/v1/namespaces/shop/configmaps"}`},
		{http.MethodDelete, "/api/v1/namespaces/shop/pods/web", "", http.StatusMethodNotAllowed, `{"answer":"DELETE /api/v1/namespaces/shop/pods/web"}`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			mu.Lock()
			got = nil
			mu.Unlock()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, p.url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
			req.Header.Set("X-Request-Id", "r-1")
			req.Header.Set("Authorization", "Bearer t")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || string(body) != tt.answer {
				t.Errorf("answer %d %q, want %d %q", resp.StatusCode, body, tt.status, tt.answer)
			}
			for h, want := range map[string]string{
				krmv1alpha1.HeaderVerifiedAt: "2026-03-01T12:00:00Z", krmv1alpha1.HeaderResourceVersion: "42", krmv1alpha1.HeaderStale: "true",
				"Content-Type": "application/json",
			} {
				if v := resp.Header.Get(h); v != want {
					t.Errorf("response header %s: %q, want %q", h, v, want)
				}
			}

			mu.Lock()
			defer mu.Unlock()
			if len(got) != 1 {
				t.Fatalf("the agent got %d requests, want 1: %+v", len(got), got)
			}
			ex := got[0]
			want := exchange{Method: tt.method, RequestURI: tt.path, Body: tt.body}
			if diff := cmp.Diff(want, ex, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Header" }, cmp.Ignore())); diff != "" {
				t.Errorf("the agent got (-want +got):\n%s", diff)
			}
			for h, want := range map[string]string{"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io", "X-Request-Id": "r-1", "Authorization": "Bearer t"} {
				if v := ex.Header.Get(h); v != want {
					t.Errorf("the agent got header %s: %q, want %q", h, v, want)
				}
			}
		})
	}
}

// A watch's events arrive as the agent flushes them, not when it ends.
func TestProxyStreamsLineByLine(t *testing.T) {
	release := make(chan struct{})
	agent := proxyAgent(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(krmv1alpha1.HeaderStreamLag, "1s")
		_, _ = io.WriteString(w, `{"type":"ADDED"}`+"\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, `{"type":"DELETED"}`+"\n")
	}))
	p := startProxy(t, agent.URL, "--port", "0")

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, p.url+"/api/v1/pods?watch=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v := resp.Header.Get(krmv1alpha1.HeaderStreamLag); v != "1s" {
		t.Errorf("%s: %q, want the agent's 1s", krmv1alpha1.HeaderStreamLag, v)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the watch ended early")
			}
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no line in 5s")
		}
		return ""
	}
	if l := next(); l != `{"type":"ADDED"}` {
		t.Errorf("first line %q", l)
	}
	// The agent is still in the middle of its answer.
	close(release)
	if l := next(); l != `{"type":"DELETED"}` {
		t.Errorf("second line %q", l)
	}
	select {
	case l, ok := <-lines:
		if ok {
			t.Errorf("extra line %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Error("the watch did not end with the agent's answer")
	}
}

// getStatus GETs url and decodes a Status answer.
func getStatus(t *testing.T, url string) (int, http.Header, metav1.Status) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s metav1.Status
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(body, &s); err != nil {
			t.Fatalf("%d answer %q is not a Status: %v", resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode, resp.Header, s
}

// With the agent gone the proxy answers 503 with a Status saying why and
// what to check; once an agent answers at the address again, it serves.
func TestProxyAgentDownThenBack(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	agent := proxyAgent(t, "", ok)
	p := startProxy(t, agent.URL, "--port", "0")
	if code, _, _ := getStatus(t, p.url+"/api/v1/pods"); code != http.StatusOK {
		t.Fatalf("with the agent up: %d", code)
	}

	addr := agent.Listener.Addr().String()
	agent.Close()
	code, header, s := getStatus(t, p.url+"/api/v1/pods")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("with the agent down: %d, want 503", code)
	}
	if ct := header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	want := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Reason: metav1.StatusReasonServiceUnavailable, Code: http.StatusServiceUnavailable,
		Details: &metav1.StatusDetails{RetryAfterSeconds: 1},
	}
	if diff := cmp.Diff(want, s, cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "Message" }, cmp.Ignore())); diff != "" {
		t.Errorf("Status (-want +got):\n%s", diff)
	}
	for _, part := range []string{
		"the krm agent is unreachable (kubectl krm proxy keeps reconnecting): ", // what
		"connection refused", // why
		"; check that the agent at --agent-url " + agent.URL + " is running and answers /healthz", // what to check
	} {
		if !strings.Contains(s.Message, part) {
			t.Errorf("message %q does not say %q", s.Message, part)
		}
	}
	if !strings.Contains(p.stderr.String(), "lost the krm agent ("+agent.URL+")") {
		t.Errorf("stderr %q does not say the agent was lost", p.stderr)
	}

	proxyAgent(t, addr, ok)
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, _, _ := getStatus(t, p.url+"/api/v1/pods")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d 15s after the agent came back", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := p.stop(); err != nil {
		t.Errorf("stopping: %v", err)
	}
	if !strings.HasSuffix(p.stderr.String(), "\nreconnected to the krm agent ("+agent.URL+")\n") {
		t.Errorf("stderr %q does not end saying the agent is back", p.stderr)
	}
}

// testUpstream is an agentUpstream over the given agents, reached in turn
// as pods would be after each other, with the stops of their forwards
// counted.
func testUpstream(t *testing.T, dial func(ctx context.Context, n int) (*agentConn, error)) (*agentUpstream, *httptest.Server) {
	t.Helper()
	var n atomic.Int32
	up := newAgentUpstream(func(ctx context.Context) (*agentConn, error) {
		return dial(ctx, int(n.Add(1)))
	}, "check the test", t.Logf)
	if err := up.attempt(t.Context()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { up.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	srv := httptest.NewServer(newProxyHandler(up, true))
	t.Cleanup(srv.Close)
	return up, srv
}

func conn(t *testing.T, srv *httptest.Server, pod string, stops *atomic.Int32) *agentConn {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &agentConn{url: u, pod: pod, stop: func() { stops.Add(1) }}
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// When the agent pod goes, the next connect finds the new one, and the
// request that found the old one gone is answered by the new one.
func TestProxyMovesToTheNextAgent(t *testing.T) {
	named := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) })
	}
	old, next := proxyAgent(t, "", named("old")), proxyAgent(t, "", named("next"))
	var oldStops, nextStops atomic.Int32
	_, srv := testUpstream(t, func(_ context.Context, n int) (*agentConn, error) {
		if n == 1 {
			return conn(t, old, "krm-system/old", &oldStops), nil
		}
		return conn(t, next, "krm-system/next", &nextStops), nil
	})
	if code, body := getBody(t, srv.URL+"/api/v1/pods"); code != http.StatusOK || body != "old" {
		t.Fatalf("first answer %d %q, want the old agent's", code, body)
	}
	old.Close()
	if code, body := getBody(t, srv.URL+"/api/v1/pods"); code != http.StatusOK || body != "next" {
		t.Errorf("answer after the old agent went: %d %q, want the next agent's", code, body)
	}
	if code, body := getBody(t, srv.URL+"/api/v1/pods"); code != http.StatusOK || body != "next" {
		t.Errorf("answer after that: %d %q, want the next agent's", code, body)
	}
	if n := oldStops.Load(); n != 1 {
		t.Errorf("the old port-forward was stopped %d times, want once", n)
	}
	if n := nextStops.Load(); n != 0 {
		t.Errorf("the next port-forward was stopped %d times, want none while in use", n)
	}
}

// A watch that breaks off, as when its port-forward dies, makes the proxy
// reconnect before the next request comes.
func TestProxyReconnectsWhenAWatchBreaks(t *testing.T) {
	old := proxyAgent(t, "", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // cut the connection mid-answer
	}))
	next := proxyAgent(t, "", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "next") }))
	var stops atomic.Int32
	dials := make(chan int, 10)
	_, srv := testUpstream(t, func(_ context.Context, n int) (*agentConn, error) {
		dials <- n
		if n == 1 {
			return conn(t, old, "krm-system/old", &stops), nil
		}
		return conn(t, next, "krm-system/next", &stops), nil
	})
	<-dials
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api/v1/pods?watch=true", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	select {
	case n := <-dials:
		if n != 2 {
			t.Errorf("dial %d, want the second", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no reconnect in 5s after the watch broke")
	}
	if code, body := getBody(t, srv.URL+"/api/v1/pods"); code != http.StatusOK || body != "next" {
		t.Errorf("answer after the watch broke: %d %q, want the next agent's", code, body)
	}
}

// A request waits for a reconnect only so long, then is answered 503.
func TestProxyRequestsDoNotWaitForever(t *testing.T) {
	gone := proxyAgent(t, "", http.NotFoundHandler())
	var stops atomic.Int32
	up, srv := testUpstream(t, func(ctx context.Context, n int) (*agentConn, error) {
		if n == 1 {
			return conn(t, gone, "krm-system/gone", &stops), nil
		}
		<-ctx.Done() // a port-forward that never gets ready
		return nil, ctx.Err()
	})
	up.wait = 200 * time.Millisecond
	gone.Close()
	start := time.Now()
	code, body := getBody(t, srv.URL+"/api/v1/pods")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "still reconnecting after 200ms") {
		t.Errorf("answer %d %q, want 503 saying the proxy is still reconnecting", code, body)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %s", d)
	}
}

func TestProxyRefusesOtherHostsOnLoopback(t *testing.T) {
	var asked atomic.Int32
	agent := proxyAgent(t, "", http.HandlerFunc(func(http.ResponseWriter, *http.Request) { asked.Add(1) }))
	p := startProxy(t, agent.URL, "--port", "0")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, p.url+"/api/v1/secrets", nil)
	req.Host = "attacker.example:8001"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s metav1.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || s.Reason != metav1.StatusReasonForbidden || !strings.Contains(s.Message, `not "attacker.example:8001"`) {
		t.Errorf("answer %d %+v, want 403 naming the host", resp.StatusCode, s)
	}
	if asked.Load() != 0 {
		t.Error("the request reached the agent")
	}
	for _, host := range []string{"localhost:8001", "127.0.0.1:8001", "[::1]:8001"} {
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Host %s: %d, want 200", host, resp.StatusCode)
		}
	}
}

func TestProxyPrintsWhereItServes(t *testing.T) {
	agent := proxyAgent(t, "", http.NotFoundHandler())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	p := startProxy(t, agent.URL, "--port", fmt.Sprint(port))
	if want := fmt.Sprintf("Starting to serve on 127.0.0.1:%d\n", port); p.stdout.String() != want {
		t.Errorf("stdout %q, want %q", p.stdout, want)
	}
	if err := p.stop(); err != nil {
		t.Errorf("stopping: %v", err)
	}
	if p.stderr.String() != "" {
		t.Errorf("stderr %q, want nothing", p.stderr)
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
		c.Close()
		t.Error("still listening after stopping")
	}

	// The default is kubectl proxy's.
	cmd := NewCmdProxy(nil, &AgentFlags{}, genericiooptions.IOStreams{})
	if got := cmd.Flags().Lookup("port").DefValue + " " + cmd.Flags().Lookup("address").DefValue; got != "8001 127.0.0.1" {
		t.Errorf("--port and --address default to %s, want 8001 127.0.0.1", got)
	}
}

func TestProxyRejects(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := fmt.Sprint(busy.Addr().(*net.TCPAddr).Port)

	tests := []struct {
		args []string
		// want is the whole message, or its start when it ends in "…".
		want string
	}{
		{[]string{"proxy", "--port", "70000"}, "--port must be between 0 and 65535 (0 picks a free port), got 70000"},
		{[]string{"proxy", "--port", "-1"}, "--port must be between 0 and 65535 (0 picks a free port), got -1"},
		{[]string{"proxy", "--port", "http"}, `invalid argument "http" for "-p, --port" flag: …`},
		{[]string{"proxy", "--address", "127.0.0.1:8001"}, `--address "127.0.0.1:8001" has a port; give the address alone and the port with --port`},
		{[]string{"proxy", "--address", "not an address"}, `--address "not an address" is neither an IP address nor a host name; give the address to listen on, e.g. 127.0.0.1 or 0.0.0.0`},
		{[]string{"proxy", "--address", "http://127.0.0.1"}, `--address "http://127.0.0.1" is neither an IP address nor a host name; give the address to listen on, e.g. 127.0.0.1 or 0.0.0.0`},
		{[]string{"proxy", "extra"}, `unknown command "extra" for "kubectl krm proxy"`},
		{[]string{"proxy", "--port", busyPort}, "listening on 127.0.0.1:" + busyPort + ": listen tcp 127.0.0.1:" + busyPort + ": bind: address already in use; choose another port with --port, or --port 0 for a free one"},
		// An agent that cannot be reached at the start is an error, not
		// a proxy answering 503 to everything.
		{[]string{"proxy", "--port", "0"}, "the krm agent at http://127.0.0.1:…"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			a := newFakeAgent(t)
			a.srv.Close()
			r := runKrm(t, a, tt.args...)
			if r.err == nil {
				t.Fatalf("succeeded, want %q", tt.want)
			}
			got := r.err.Error()
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Errorf("error %q, want it to start with %q", got, prefix)
				}
			} else if got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
			if r.stdout != "" {
				t.Errorf("printed %q", r.stdout)
			}
		})
	}
}

// Stopping ends the proxy, and the watches through it, within its grace.
func TestProxyStopsWithAWatchOpen(t *testing.T) {
	agent := proxyAgent(t, "", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "{}\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	p := startProxy(t, agent.URL, "--port", "0")
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, p.url+"/api/v1/pods?watch=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		close(ended)
	}()
	start := time.Now()
	if err := p.stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	if d := time.Since(start); d > proxyShutdownGrace+time.Second {
		t.Errorf("stopping took %s, want about the %s grace", d, proxyShutdownGrace)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Error("the watch through the proxy is still open after it stopped")
	}
}

// With an https --agent-url the proxy sends the kubeconfig's credentials,
// as kubectl proxy sends them to the API server, and passes the agent's
// bytes through uncompressed.
func TestProxySendsCredentialsToAnHTTPSAgent(t *testing.T) {
	var mu sync.Mutex
	var auth, encodings []string
	agent := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Method+" "+r.URL.Path+": "+r.Header.Get("Authorization"))
		encodings = append(encodings, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		proxyAgentHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = io.WriteString(w, `{"kind":"PodList"}`)
		})).ServeHTTP(w, r)
	}))
	agent.StartTLS()
	t.Cleanup(agent.Close)
	// kubeconfigIn's user has the token "t".
	p := startProxy(t, agent.URL, "--port", "0", "--agent-insecure-skip-tls-verify", "--kubeconfig", kubeconfigIn(t, "team-a"))

	// A client that asks for no compression, so that any the agent sees
	// would be the proxy's own.
	hc := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.url+"/api/v1/namespaces/team-a/pods", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != `{"kind":"PodList"}` {
		t.Errorf("answer %d %q, want the agent's", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{
		"GET /healthz: Bearer t",
		"GET /apis/krm.io/v1alpha1/agentstatuses/agent: Bearer t",
		"GET /api/v1/namespaces/team-a/pods: Bearer t",
	}
	if diff := cmp.Diff(want, auth); diff != "" {
		t.Errorf("the agent's requests and their Authorization (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"", "", ""}, encodings); diff != "" {
		t.Errorf("Accept-Encoding the agent got (-want +got):\n%s", diff)
	}
}

// A kubeconfig the agent's secure listener cannot check stops the proxy
// before it serves.
func TestProxyRefusesAClientCertificateForAnHTTPSAgent(t *testing.T) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificateData: []byte("cert"), ClientKeyData: []byte("key")}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := NewCmdKrm(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &stdout, ErrOut: &stderr})
	cmd.SetArgs([]string{"proxy", "--port", "0", "--agent-url", "https://127.0.0.1:1", "--kubeconfig", path})
	err := cmd.ExecuteContext(t.Context())
	want := "your kubeconfig's user authenticates with a client certificate only, which the krm agent at https://127.0.0.1:1 cannot check: " + connect.TokenHint
	if err == nil || err.Error() != want {
		t.Errorf("kubectl krm proxy: %v, want %q", err, want)
	}
	if stdout.Len() != 0 {
		t.Errorf("printed %q", stdout.String())
	}
}

// --token reaches an https agent without a kubeconfig, whose default API
// server is http (for which clientcmd drops credentials).
func TestTokenFlagWithoutAKubeconfig(t *testing.T) {
	var mu sync.Mutex
	var auth []string
	agent := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		proxyAgentHandler(http.NotFoundHandler()).ServeHTTP(w, r)
	}))
	agent.StartTLS()
	t.Cleanup(agent.Close)
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	var stdout, stderr bytes.Buffer
	cmd := NewCmdKrm(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &stdout, ErrOut: &stderr})
	cmd.SetArgs([]string{"version", "--agent-url", agent.URL, "--agent-insecure-skip-tls-verify", "--token", "flag-token"})
	if err := cmd.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("kubectl krm version: %v\n%s", err, stdout.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"Bearer flag-token", "Bearer flag-token"}, auth); diff != "" {
		t.Errorf("Authorization headers the agent got (-want +got):\n%s", diff)
	}
}
