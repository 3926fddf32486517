package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// droppingProxy stands between an agent and kube-apiserver, forwarding every
// request as the admin, and leaves chosen events out of watches: a watch
// that silently misses events, which only the agent's LISTs can expose.
type droppingProxy struct {
	upstream *url.URL
	rt       http.RoundTripper
	drop     func(typ, name string) bool
	srv      *httptest.Server

	mu      sync.Mutex
	dropped []string // "TYPE name"
}

// newDroppingProxy starts a proxy to cfg's kube-apiserver. Start it before
// the agent that uses it: cleanups run last-in first-out, and the proxy
// waits for the agent's watches to end when it closes.
func newDroppingProxy(t *testing.T, cfg *rest.Config, drop func(typ, name string) bool) *droppingProxy {
	t.Helper()
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	p := &droppingProxy{upstream: upstream, rt: rt, drop: drop}
	p.srv = httptest.NewServer(p)
	t.Cleanup(p.srv.Close)
	return p
}

// kubeconfig writes a kubeconfig that reaches kube-apiserver through the
// proxy: plain HTTP, no credentials (the proxy has them).
func (p *droppingProxy) kubeconfig(t *testing.T) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["proxy"] = &clientcmdapi.Cluster{Server: p.srv.URL}
	kc.AuthInfos["proxy"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["proxy"] = &clientcmdapi.Context{Cluster: "proxy", AuthInfo: "proxy"}
	kc.CurrentContext = "proxy"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// Dropped returns the events left out so far, as "TYPE name".
func (p *droppingProxy) Dropped() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.dropped...)
}

// hopByHop are one connection's headers, not forwarded. Without
// Accept-Encoding the transport asks for gzip itself and decompresses, so
// watch events can be read line by line.
var hopByHop = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Accept-Encoding", "Content-Length",
}

func (p *droppingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI, out.Host = "", ""
	u := *p.upstream
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	out.URL = &u
	for _, h := range hopByHop {
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
	for _, h := range hopByHop {
		w.Header().Del(h)
	}
	w.WriteHeader(resp.StatusCode)
	if q := r.URL.Query().Get("watch"); (q != "true" && q != "1") || resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(w, resp.Body)
		return
	}
	// A JSON watch is one event per line.
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			return
		}
		var ev struct {
			Type   string `json:"type"`
			Object struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"object"`
		}
		if json.Unmarshal(line, &ev) == nil && p.drop(ev.Type, ev.Object.Metadata.Name) {
			p.mu.Lock()
			p.dropped = append(p.dropped, ev.Type+" "+ev.Object.Metadata.Name)
			p.mu.Unlock()
			continue
		}
		if _, err := w.Write(line); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
