// Package client is the Go client of a krm agent: the Kubernetes read API
// it serves (with krm's freshness on every answer) and krm's own
// krm.io/v1alpha1 objects. It links neither the agent's store nor its
// metrics, only apimachinery.
package client

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
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// ResourceInfo names a resource the agent caches.
type ResourceInfo = krmv1alpha1.ResourceInfo

// Client reads a krm agent.
type Client struct {
	base *url.URL
	hc   *http.Client
	// wc is hc without its overall timeout, which would cut every watch.
	wc *http.Client
}

// New returns a client for the agent at baseURL (e.g.
// "http://127.0.0.1:8080", or a URL with a path prefix behind a proxy). A
// nil hc uses a client that bounds connecting and whole requests; watches
// never have an overall timeout, whatever hc says.
func New(baseURL string, hc *http.Client) (*Client, error) {
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

// URL is the agent's base URL.
func (c *Client) URL() string { return c.base.String() }

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
	// View is krm's: aggregated (the default), verified or streamed.
	View string
	// Limit and Continue page a list; a watch takes neither.
	Limit    int64
	Continue string
	// ResourceVersion is a list's or a watch's, with kube-apiserver's
	// meaning.
	ResourceVersion string
	// MaxStaleness makes the agent refuse (503) data verified longer ago.
	MaxStaleness time.Duration
	// At lists the view as it was at that time, from the agent's history.
	At time.Time
}

func (o ListOptions) values() url.Values {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("labelSelector", o.LabelSelector)
	set("fieldSelector", o.FieldSelector)
	set("view", o.View)
	if o.Limit != 0 {
		q.Set("limit", strconv.FormatInt(o.Limit, 10))
	}
	set("continue", o.Continue)
	set("resourceVersion", o.ResourceVersion)
	if o.MaxStaleness != 0 {
		q.Set("maxStaleness", o.MaxStaleness.String())
	}
	if !o.At.IsZero() {
		q.Set("at", o.At.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// GetOptions qualify a single-object read.
type GetOptions struct {
	View         string
	MaxStaleness time.Duration
}

// Freshness is what an answer's headers say about the data's age.
type Freshness struct {
	// VerifiedAt is when the last LIST completed; zero before the first.
	VerifiedAt time.Time
	// VerifiedResourceVersion is that LIST's resourceVersion: objects
	// newer than it came from the watch and are not verified yet.
	VerifiedResourceVersion string
	ResourceVersion         string
	// StreamLag is a Go duration since the watch last spoke, or
	// "disconnected".
	StreamLag    string
	AgentVersion string
	// Stale is true while the agent serves frames it loaded from its store
	// on a restart, before its own first LIST.
	Stale bool
}

// Source says whether an object of this answer is verified (as the last
// LIST had it) or streamed (changed since), by its resourceVersion.
func (f Freshness) Source(resourceVersion string) string {
	v, err1 := strconv.ParseUint(resourceVersion, 10, 64)
	verified, err2 := strconv.ParseUint(f.VerifiedResourceVersion, 10, 64)
	if err1 != nil || err2 != nil || v > verified {
		return "streamed"
	}
	return "verified"
}

func freshness(h http.Header) (Freshness, error) {
	f := Freshness{
		VerifiedResourceVersion: h.Get(krmv1alpha1.HeaderVerifiedResourceVersion),
		ResourceVersion:         h.Get(krmv1alpha1.HeaderResourceVersion),
		StreamLag:               h.Get(krmv1alpha1.HeaderStreamLag),
		AgentVersion:            h.Get(krmv1alpha1.HeaderAgentVersion),
		Stale:                   h.Get(krmv1alpha1.HeaderStale) == "true",
	}
	if v := h.Get(krmv1alpha1.HeaderVerifiedAt); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, fmt.Errorf("the agent sent an invalid %s header: %w", krmv1alpha1.HeaderVerifiedAt, err)
		}
		f.VerifiedAt = t
	}
	return f, nil
}

// RawList is a list with its items left as JSON.
type RawList = List[json.RawMessage]

// List is a list with its items decoded as T (e.g. corev1.Pod).
type List[T any] struct {
	APIVersion         string
	Kind               string
	ResourceVersion    string
	Continue           string
	RemainingItemCount *int64
	Items              []T
	Freshness          Freshness
}

// RawObject is one object as JSON.
type RawObject = Object[json.RawMessage]

// Object is one object decoded as T.
type Object[T any] struct {
	Object    T
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
	Items []T `json:"items"`
}

// Path is the Kubernetes API path of info's objects in namespace ("" for
// all namespaces or a cluster-scoped resource).
func Path(info ResourceInfo, namespace string) []string {
	segs := []string{"apis", info.Group, info.Version}
	if info.Group == "" {
		segs = []string{"api", info.Version}
	}
	if namespace != "" && info.Namespaced {
		segs = append(segs, "namespaces", namespace)
	}
	return append(segs, info.Resource)
}

// List lists info's objects, keeping the items as JSON.
func (c *Client) List(ctx context.Context, info ResourceInfo, opts ListOptions) (*RawList, error) {
	return ListAs[json.RawMessage](ctx, c, info, opts)
}

// ListAs lists info's objects, decoding the items as T.
func ListAs[T any](ctx context.Context, c *Client, info ResourceInfo, opts ListOptions) (*List[T], error) {
	var body listBody[T]
	f, err := c.getJSON(ctx, &body, opts.values(), Path(info, opts.Namespace)...)
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
		Freshness:          f,
	}, nil
}

// Get reads one object; namespace is "" for a cluster-scoped resource.
func (c *Client) Get(ctx context.Context, info ResourceInfo, namespace, name string, opts GetOptions) (*RawObject, error) {
	return GetAs[json.RawMessage](ctx, c, info, namespace, name, opts)
}

// GetAs reads one object and decodes it as T.
func GetAs[T any](ctx context.Context, c *Client, info ResourceInfo, namespace, name string, opts GetOptions) (*Object[T], error) {
	out := &Object[T]{}
	q := ListOptions{View: opts.View, MaxStaleness: opts.MaxStaleness}.values()
	f, err := c.getJSON(ctx, &out.Object, q, append(Path(info, namespace), name)...)
	if err != nil {
		return nil, err
	}
	out.Freshness = f
	return out, nil
}

// Event is one watch event.
type Event struct {
	// Type is ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
	// Err is set for ERROR: the agent's Status, or why the stream broke.
	Err error `json:"-"`
}

// Watch streams info's matching objects: with opts.ResourceVersion "",
// ADDED for each object now, then every change. The channel closes when
// ctx is done or the stream ends; a stream that breaks ends with an ERROR
// event, after which the caller should watch again. The Freshness is the
// watch's start.
func (c *Client) Watch(ctx context.Context, info ResourceInfo, opts ListOptions) (<-chan Event, Freshness, error) {
	q := opts.values()
	q.Set("watch", "true")
	resp, _, err := c.do(ctx, c.wc, q, Path(info, opts.Namespace)...)
	if err != nil {
		return nil, Freshness{}, err
	}
	f, err := freshness(resp.Header)
	if err != nil {
		resp.Body.Close()
		return nil, f, err
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
				ev = Event{Type: "ERROR", Err: fmt.Errorf("reading the watch of %s: %w", info.Name, err)}
			} else if ev.Type == "ERROR" {
				if ev.Err = statusError(ev.Object, http.StatusInternalServerError); ev.Err == nil {
					ev.Err = fmt.Errorf("the watch of %s ended with an error: %s", info.Name, ev.Object)
				}
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
			if ev.Type == "ERROR" {
				return
			}
		}
	}()
	return events, f, nil
}

// AgentStatus reads the agent's krm.io AgentStatus.
func (c *Client) AgentStatus(ctx context.Context) (*krmv1alpha1.AgentStatus, error) {
	var st krmv1alpha1.AgentStatus
	if _, err := c.getJSON(ctx, &st, nil, krmPath(krmv1alpha1.ResourceAgentStatuses, krmv1alpha1.AgentName)...); err != nil {
		return nil, err
	}
	return &st, nil
}

// ResourceStatuses lists the cached resources and their state.
func (c *Client) ResourceStatuses(ctx context.Context) (*krmv1alpha1.ResourceStatusList, error) {
	var list krmv1alpha1.ResourceStatusList
	if _, err := c.getJSON(ctx, &list, nil, krmPath(krmv1alpha1.ResourceResourceStatuses, "")...); err != nil {
		return nil, err
	}
	return &list, nil
}

// Status is the agent's status and every cached resource's.
type Status struct {
	Agent     krmv1alpha1.AgentState
	Resources []krmv1alpha1.ResourceState
}

// Status reads the agent's AgentStatus and its ResourceStatuses.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	agent, err := c.AgentStatus(ctx)
	if err != nil {
		return nil, err
	}
	list, err := c.ResourceStatuses(ctx)
	if err != nil {
		return nil, err
	}
	st := &Status{Agent: agent.Status}
	for _, item := range list.Items {
		st.Resources = append(st.Resources, item.Status)
	}
	return st, nil
}

// Resource finds a cached resource by any name kubectl accepts for it: the
// plural, the singular, a short name, the kind or plural.group.
func (c *Client) Resource(ctx context.Context, name string) (ResourceInfo, error) {
	list, err := c.ResourceStatuses(ctx)
	if err != nil {
		return ResourceInfo{}, err
	}
	for _, st := range list.Items {
		if slices.Contains(st.Status.Names(), strings.ToLower(name)) || slices.Contains(st.Status.Names(), name) {
			return st.Status.ResourceInfo, nil
		}
	}
	return ResourceInfo{}, apierrors.NewNotFound(schema.GroupResource{Group: krmv1alpha1.GroupName, Resource: krmv1alpha1.ResourceResourceStatuses}, name)
}

// DriftReport reads one resource's drift report.
func (c *Client) DriftReport(ctx context.Context, resource string) (*krmv1alpha1.DriftReport, error) {
	var rep krmv1alpha1.DriftReport
	if _, err := c.getJSON(ctx, &rep, nil, krmPath(krmv1alpha1.ResourceDriftReports, resource)...); err != nil {
		return nil, err
	}
	return &rep, nil
}

// DelayReport reads one resource's (or the probe's) stream delay over the
// last since (0: the agent's default, 1h), for event ("" for both).
func (c *Client) DelayReport(ctx context.Context, resource, event string, since time.Duration) (*krmv1alpha1.DelayReport, error) {
	q := url.Values{}
	if event != "" {
		q.Set("event", event)
	}
	if since > 0 {
		q.Set("since", since.String())
	}
	var rep krmv1alpha1.DelayReport
	if _, err := c.getJSON(ctx, &rep, q, krmPath(krmv1alpha1.ResourceDelayReports, resource)...); err != nil {
		return nil, err
	}
	return &rep, nil
}

// Revisions lists an object's revisions, oldest first: resource as the
// agent names it, namespace "" for a cluster-scoped object, since "" for
// all (else a Go duration or an RFC 3339 time).
func (c *Client) Revisions(ctx context.Context, resource, namespace, name, since string) (*krmv1alpha1.RevisionList, error) {
	q := url.Values{"resource": {resource}, "name": {name}}
	if namespace != "" {
		q.Set("namespace", namespace)
	}
	if since != "" {
		q.Set("since", since)
	}
	var list krmv1alpha1.RevisionList
	if _, err := c.getJSON(ctx, &list, q, krmPath(krmv1alpha1.ResourceRevisions, "")...); err != nil {
		return nil, err
	}
	return &list, nil
}

func krmPath(resource, name string) []string {
	segs := []string{"apis", krmv1alpha1.GroupName, krmv1alpha1.SchemeGroupVersion.Version, resource}
	if name != "" {
		segs = append(segs, name)
	}
	return segs
}

// Healthz returns nil when the agent answers /healthz with 200.
func (c *Client) Healthz(ctx context.Context) error { return c.probe(ctx, "healthz") }

// Readyz returns nil when the agent is ready; otherwise an error whose
// message is the agent's sentence saying why not.
func (c *Client) Readyz(ctx context.Context) error { return c.probe(ctx, "readyz") }

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

// do sends a GET and returns the response if it is a 200. Any other answer
// comes back as an error: the agent's Status as an *apierrors.StatusError
// when it sent one.
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

// readError turns a non-200 answer into an error: the agent's Status when
// it sent one, else the start of whatever came back.
func readError(resp *http.Response, u string) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "application/json" {
		if err := statusError(body, resp.StatusCode); err != nil {
			return err
		}
	}
	text := strings.TrimSpace(string(body))
	if len(text) > 512 {
		text = text[:512] + "…"
	}
	if text == "" {
		text = fmt.Sprintf("GET %s: %s", u, resp.Status)
	}
	return apierrors.NewGenericServerResponse(resp.StatusCode, http.MethodGet, schema.GroupResource{}, "", text, 0, false)
}

// statusError decodes a Status; nil when body is not one.
func statusError(body []byte, code int) error {
	var st metav1.Status
	if json.Unmarshal(body, &st) != nil || st.Kind != "Status" {
		return nil
	}
	if st.Code == 0 {
		st.Code = int32(code)
	}
	return &apierrors.StatusError{ErrStatus: st}
}
