package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client reads a krm agent's API.
type Client struct {
	base *url.URL
	hc   *http.Client
	// wc is hc without its overall timeout, which would cut every watch.
	wc *http.Client
}

// NewClient returns a client for the agent at baseURL (e.g.
// "http://127.0.0.1:8080", or a URL with a path prefix behind a proxy). A
// nil hc uses a client that bounds connecting and whole requests; watches
// never have an overall timeout, whatever hc says.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("invalid agent URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("invalid agent URL %q: it must start with http:// or https://", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("invalid agent URL %q: it has no host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("invalid agent URL %q: it must not have a query or fragment", baseURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	if hc == nil {
		hc = defaultHTTPClient()
	}
	wc := *hc
	wc.Timeout = 0
	return &Client{base: u, hc: hc, wc: &wc}, nil
}

func defaultHTTPClient() *http.Client {
	return &http.Client{
		// Long enough for a list of tens of thousands of objects through a
		// port-forward; watches use a copy without it.
		Timeout: 2 * time.Minute,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConns:          10,
			ForceAttemptHTTP2:     true,
		},
	}
}

// ListOptions select and page a list or a watch. Zero values are omitted.
type ListOptions struct {
	Namespace     string
	LabelSelector string
	FieldSelector string
	// View is aggregated (the default), verified or streamed.
	View string
	// Limit and Continue page a list; a watch takes neither.
	Limit    int64
	Continue string
	// MaxStaleness makes the agent refuse (503) data verified longer ago.
	MaxStaleness time.Duration
}

func (o ListOptions) values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("namespace", o.Namespace)
	set("labelSelector", o.LabelSelector)
	set("fieldSelector", o.FieldSelector)
	set("view", o.View)
	if o.Limit != 0 {
		q.Set("limit", strconv.FormatInt(o.Limit, 10))
	}
	set("continue", o.Continue)
	if o.MaxStaleness != 0 {
		q.Set("maxStaleness", o.MaxStaleness.String())
	}
	return q
}

// GetOptions qualify a single-object read.
type GetOptions struct {
	View         string
	MaxStaleness time.Duration
}

func (o GetOptions) values() url.Values {
	return ListOptions{View: o.View, MaxStaleness: o.MaxStaleness}.values()
}

// Freshness is what the response headers say about the data's age.
type Freshness struct {
	// VerifiedAt is when the last LIST completed; zero before the first.
	VerifiedAt      time.Time
	ResourceVersion string
	// StreamLag is a Go duration since the watch last spoke, or
	// "disconnected".
	StreamLag    string
	AgentVersion string
	// Stale is true while the agent serves frames it loaded from its store
	// on a restart, before its own first LIST.
	Stale bool
}

func freshness(h http.Header) (Freshness, error) {
	f := Freshness{
		ResourceVersion: h.Get(HeaderResourceVersion),
		StreamLag:       h.Get(HeaderStreamLag),
		AgentVersion:    h.Get(HeaderAgentVersion),
		Stale:           h.Get(HeaderStale) == "true",
	}
	if v := h.Get(HeaderVerifiedAt); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, fmt.Errorf("the agent sent an invalid %s header: %w", HeaderVerifiedAt, err)
		}
		f.VerifiedAt = t
	}
	return f, nil
}

// RawList is a list with its items left as JSON.
type RawList struct {
	APIVersion         string
	Kind               string
	ResourceVersion    string
	Continue           string
	RemainingItemCount *int64
	Items              []json.RawMessage
	Krm                ListMeta
	Freshness          Freshness
}

// List is a list with its items decoded as T (e.g. corev1.Pod).
type List[T any] struct {
	APIVersion         string
	Kind               string
	ResourceVersion    string
	Continue           string
	RemainingItemCount *int64
	Items              []T
	Krm                ListMeta
	Freshness          Freshness
}

// RawObject is one object as JSON, without the "krm" member.
type RawObject struct {
	Object    json.RawMessage
	Krm       ObjectMeta
	Freshness Freshness
}

// Object is one object decoded as T.
type Object[T any] struct {
	Object    T
	Krm       ObjectMeta
	Freshness Freshness
}

// listBody is the wire shape of a list.
type listBody[T any] struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		ResourceVersion    string `json:"resourceVersion"`
		Continue           string `json:"continue"`
		RemainingItemCount *int64 `json:"remainingItemCount"`
	} `json:"metadata"`
	Items []T      `json:"items"`
	Krm   ListMeta `json:"krm"`
}

// Resources lists the watched resources and their status.
func (c *Client) Resources(ctx context.Context) (*ResourceList, error) {
	var list ResourceList
	if _, err := c.getJSON(ctx, &list, nil, "api", Version, "resources"); err != nil {
		return nil, err
	}
	return &list, nil
}

// List lists resource, keeping the items as JSON.
func (c *Client) List(ctx context.Context, resource string, opts ListOptions) (*RawList, error) {
	l, err := ListAs[json.RawMessage](ctx, c, resource, opts)
	if err != nil {
		return nil, err
	}
	return &RawList{
		APIVersion: l.APIVersion, Kind: l.Kind, ResourceVersion: l.ResourceVersion,
		Continue: l.Continue, RemainingItemCount: l.RemainingItemCount,
		Items: l.Items, Krm: l.Krm, Freshness: l.Freshness,
	}, nil
}

// ListAs lists resource, decoding the items as T.
func ListAs[T any](ctx context.Context, c *Client, resource string, opts ListOptions) (*List[T], error) {
	var body listBody[T]
	f, err := c.getJSON(ctx, &body, opts.values(), "api", Version, "resources", resource)
	if err != nil {
		return nil, err
	}
	return &List[T]{
		APIVersion:         body.APIVersion,
		Kind:               body.Kind,
		ResourceVersion:    body.Metadata.ResourceVersion,
		Continue:           body.Metadata.Continue,
		RemainingItemCount: body.Metadata.RemainingItemCount,
		Items:              body.Items,
		Krm:                body.Krm,
		Freshness:          f,
	}, nil
}

// Get reads one object; namespace is "" for a cluster-scoped resource.
func (c *Client) Get(ctx context.Context, resource, namespace, name string, opts GetOptions) (*RawObject, error) {
	segments := []string{"api", Version, "resources", resource, name}
	if namespace != "" {
		segments = []string{"api", Version, "resources", resource, "namespaces", namespace, name}
	}
	resp, u, err := c.do(ctx, c.hc, opts.values(), segments...)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading GET %s: %w", u, err)
	}
	obj, meta, err := DecodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	f, err := freshness(resp.Header)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return &RawObject{Object: obj, Krm: meta, Freshness: f}, nil
}

// GetAs reads one object and decodes it as T.
func GetAs[T any](ctx context.Context, c *Client, resource, namespace, name string, opts GetOptions) (*Object[T], error) {
	raw, err := c.Get(ctx, resource, namespace, name, opts)
	if err != nil {
		return nil, err
	}
	out := &Object[T]{Krm: raw.Krm, Freshness: raw.Freshness}
	if err := json.Unmarshal(raw.Object, &out.Object); err != nil {
		return nil, fmt.Errorf("decoding %s %q: %w", resource, name, err)
	}
	return out, nil
}

// Drift returns resource's drift report.
func (c *Client) Drift(ctx context.Context, resource string) (*DriftReport, error) {
	var report DriftReport
	if _, err := c.getJSON(ctx, &report, nil, "api", Version, "resources", resource, "drift"); err != nil {
		return nil, err
	}
	return &report, nil
}

// Watch streams resource's matching objects as ADDED events, then its
// changes. The channel closes when ctx is done or the stream ends; a stream
// that breaks, or that the agent ends because the watcher fell behind,
// ends with an ERROR event, after which the caller should watch again.
func (c *Client) Watch(ctx context.Context, resource string, opts ListOptions) (<-chan Event, error) {
	q := opts.values()
	q.Set("watch", "true")
	resp, _, err := c.do(ctx, c.wc, q, "api", Version, "resources", resource)
	if err != nil {
		return nil, err
	}
	events := make(chan Event)
	go func() {
		defer close(events)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var ev Event
			if err := dec.Decode(&ev); err != nil {
				if ctx.Err() != nil || errors.Is(err, io.EOF) {
					return
				}
				ev = Event{Type: EventError, Message: fmt.Sprintf("reading the watch of %s: %v", resource, err)}
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
			if ev.Type == EventError {
				return
			}
		}
	}()
	return events, nil
}

// Healthz returns nil when the agent answers /healthz with 200.
func (c *Client) Healthz(ctx context.Context) error {
	return c.probe(ctx, "healthz")
}

// Readyz returns nil when the agent is ready; otherwise an *Error whose
// message is the agent's sentence saying why not.
func (c *Client) Readyz(ctx context.Context) error {
	return c.probe(ctx, "readyz")
}

func (c *Client) probe(ctx context.Context, path string) error {
	resp, _, err := c.do(ctx, c.hc, nil, path)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// getJSON GETs the path made of segments and decodes the answer into v.
func (c *Client) getJSON(ctx context.Context, v any, q url.Values, segments ...string) (Freshness, error) {
	resp, u, err := c.do(ctx, c.hc, q, segments...)
	if err != nil {
		return Freshness{}, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return Freshness{}, fmt.Errorf("decoding GET %s: %w", u, err)
	}
	f, err := freshness(resp.Header)
	if err != nil {
		return f, fmt.Errorf("GET %s: %w", u, err)
	}
	return f, nil
}

// do sends a GET and returns the response if it is a 200. Any other status
// comes back as an *Error.
func (c *Client) do(ctx context.Context, hc *http.Client, q url.Values, segments ...string) (*http.Response, string, error) {
	u := c.endpoint(q, segments...)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, u, fmt.Errorf("building GET %s: %w", u, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error would repeat the URL in its own words.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, u, fmt.Errorf("reaching the krm agent: GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, u, readError(resp, u)
	}
	return resp, u, nil
}

func (c *Client) endpoint(q url.Values, segments ...string) string {
	u := *c.base
	raw := u.EscapedPath()
	for _, s := range segments {
		u.Path += "/" + s
		raw += "/" + url.PathEscape(s)
	}
	u.RawPath = raw
	u.RawQuery = q.Encode()
	return u.String()
}

// readError turns a non-200 answer into an *Error: the agent's own JSON
// error when it sent one, else the start of whatever came back.
func readError(resp *http.Response, u string) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			return &Error{Status: resp.StatusCode, Message: e.Message}
		}
	}
	text := strings.TrimSpace(string(body))
	if len(text) > 512 {
		text = text[:512] + "…"
	}
	if text == "" {
		text = fmt.Sprintf("GET %s: %s", u, resp.Status)
	}
	return &Error{Status: resp.StatusCode, Message: text}
}
