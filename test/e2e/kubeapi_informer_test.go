package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	clientfeatures "k8s.io/client-go/features"
	clientfeaturestesting "k8s.io/client-go/features/testing"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// watchedLabel=yes is what the filtered informers select.
const watchedLabel = "krm-e2e/watched"

var podsGVR = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

// TestInformersThroughAgent runs client-go informers (typed, dynamic,
// metadata, and one filtered by a label selector) against the agent's
// Kubernetes API, beside the same informers against kube-apiserver, once
// with WatchList off and once on. Through the agent each must ask what it
// asks kube-apiserver, sync to what kube-apiserver holds, see every change
// exactly as kube-apiserver's own informer sees it, and, after the agent
// restarts, resume or relist through 410 as after a restart of
// kube-apiserver.
func TestInformersThroughAgent(t *testing.T) {
	c := clustertest.Get(t)
	bin := buildAgent(t)
	for _, tc := range []struct {
		name      string
		watchList bool
	}{{"WatchListOff", false}, {"WatchListOn", true}} {
		t.Run(tc.name, func(t *testing.T) {
			// Each reflector reads the gate when it is made, and the gate
			// is global: these subtests must not run in parallel.
			clientfeaturestesting.SetFeatureDuringTest(t, clientfeatures.WatchListClient, tc.watchList)
			testInformers(t, c, bin, tc.watchList)
		})
	}
}

func testInformers(t *testing.T, c *cluster.State, bin string, watchList bool) {
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	refCfg, err := c.RESTConfig()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	// These reach the informers through their first LIST or WatchList.
	createDeployment(t, cs, ns, "seed", 2)
	createPod(t, cs, ns, "seed-plain", false)
	createPod(t, cs, ns, "seed-watched", true)

	// The informers point at one address: the agent restarted later must
	// listen there again.
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	agentArgs := []string{"--kubeconfig", c.Kubeconfig, "--resources", "pods,deployments", "--verify-interval", "5s"}
	agent := startAgentOn(t, bin, listen, agentArgs...)
	agent.waitReady(t, 30*time.Second)

	viaAgent := startInformers(t, &rest.Config{Host: agent.URL}, ns, "the agent")
	viaAPI := startInformers(t, refCfg, ns, "kube-apiserver")
	requireConverged(t, cs, ns, "after syncing", viaAgent)
	for i, in := range viaAgent {
		checkSyncRequests(t, in, viaAPI[i], watchList)
	}

	// Create, update and delete: each informer through the agent must see
	// the same handler calls, with the same resourceVersions, as its twin
	// on kube-apiserver. flip enters the filtered informers' selection and
	// leaves it again.
	createPod(t, cs, ns, "life", false)
	patchPod(t, cs, ns, "life", `{"metadata":{"labels":{"stage":"updated"}}}`)
	deletePod(t, cs, ns, "life")
	createPod(t, cs, ns, "flip", false)
	rvIn := patchPod(t, cs, ns, "flip", `{"metadata":{"labels":{"`+watchedLabel+`":"yes"}}}`)
	rvOut := patchPod(t, cs, ns, "flip", `{"metadata":{"labels":{"`+watchedLabel+`":null}}}`)
	deletePod(t, cs, ns, "flip")
	scaleDeployment(t, cs, ns, "seed", 3)
	for _, in := range append(slices.Clone(viaAgent), viaAPI...) {
		switch {
		case in.selector != "":
			in.waitSeen(t, 0, "ADD", "flip", func(e seen) bool { return e.RV == rvIn })
			in.waitSeen(t, 0, "DELETE", "flip", func(e seen) bool { return e.RV == rvOut })
		case in.resource == "pods":
			in.waitSeen(t, 0, "DELETE", "life", nil)
			in.waitSeen(t, 0, "DELETE", "flip", nil)
		}
	}
	for i, in := range viaAgent {
		for _, name := range []string{"life", "flip"} {
			if diff := cmp.Diff(viaAPI[i].events.of(0, name), in.events.of(0, name)); diff != "" {
				t.Errorf("%s: handler calls for pod %s differ from the same informer's on kube-apiserver (-kube-apiserver +agent):\n%s", in, name, diff)
			}
		}
	}
	requireConverged(t, cs, ns, "after changes", viaAgent)

	// Restart the agent. What changes meanwhile the new agent learns only
	// from its first LIST, so its history starts after every informer's
	// last resourceVersion: kube-apiserver would answer a watch from there
	// 410, and the informer relists.
	held := make([]map[string]string, len(viaAgent))
	marks := make([]int, len(viaAgent))
	for i, in := range viaAgent {
		held[i], marks[i] = in.held(), in.events.len()
	}
	if err := agent.stop(10 * time.Second); err != nil {
		t.Fatalf("stopping the agent: %v", err)
	}
	stopped := time.Now()
	createPod(t, cs, ns, "during", true)
	deletePod(t, cs, ns, "seed-watched")
	scaleDeployment(t, cs, ns, "seed", 1)
	agent = startAgentOn(t, bin, listen, agentArgs...)
	agent.waitReady(t, 30*time.Second)
	ready := time.Now()
	for i, in := range viaAgent {
		if in.resource == "pods" {
			in.waitSeen(t, marks[i], "ADD", "during", nil)
			in.waitSeen(t, marks[i], "DELETE", "seed-watched", nil)
		}
	}
	requireConverged(t, cs, ns, "after the agent restarted", viaAgent)

	// And they go on following.
	createPod(t, cs, ns, "after", true)
	deletePod(t, cs, ns, "during")
	for i, in := range viaAgent {
		if in.resource == "pods" {
			in.waitSeen(t, marks[i], "ADD", "after", nil)
			in.waitSeen(t, marks[i], "DELETE", "during", nil)
		}
	}
	requireConverged(t, cs, ns, "following after the restart", viaAgent)
	for i, in := range viaAgent {
		// An object there all along is never deleted and added again: a
		// relist that did so was served a state that lacked it.
		now := in.held()
		for name := range held[i] {
			if _, ok := now[name]; !ok {
				continue
			}
			for _, e := range in.events.of(marks[i], name) {
				if e.Type != "UPDATE" {
					t.Errorf("%s: %s %s across the restart, though it existed throughout; its calls since: %+v", in, e.Type, name, in.events.of(marks[i], name))
					break
				}
			}
		}
		checkRestartRequests(t, in, stopped, ready, watchList)
	}
}

// informer is one informer under test and what it and its client did.
type informer struct {
	role     string // the same for an informer on the agent and its twin on kube-apiserver
	via      string
	inf      cache.SharedIndexInformer
	resource string
	selector string
	requests *requestLog
	events   *eventLog
	// view makes an object the informer holds and one kube-apiserver
	// lists comparable.
	view func(any) (any, error)
}

func (in *informer) String() string { return in.role + " informer on " + in.via }

// startInformers starts, against cfg, in ns: a typed informer factory's
// pods and deployments informers, a typed pods informer whose client
// prefers protobuf, one filtered by watchedLabel=yes, and dynamic and
// metadata pods informers; each client
// with its own requestLog. It returns once they have synced.
func startInformers(t *testing.T, cfg *rest.Config, ns, via string) []*informer {
	var out []*informer
	client := func() (*rest.Config, *requestLog) {
		log := &requestLog{}
		c := rest.CopyConfig(cfg)
		c.Wrap(log.wrap)
		return c, log
	}
	add := func(role, resource, selector string, inf cache.SharedIndexInformer, log *requestLog, view func(any) (any, error)) {
		in := &informer{role: role, via: via, inf: inf, resource: resource, selector: selector, requests: log, events: &eventLog{}, view: view}
		if _, err := inf.AddEventHandler(in.events.handler()); err != nil {
			t.Fatal(err)
		}
		out = append(out, in)
	}

	typedCfg, typedLog := client()
	typed := informers.NewSharedInformerFactoryWithOptions(kubernetes.NewForConfigOrDie(typedCfg), 0, informers.WithNamespace(ns))
	add("typed pods", "pods", "", typed.Core().V1().Pods().Informer(), typedLog, podView)
	add("typed deployments", "deployments", "", typed.Apps().V1().Deployments().Informer(), typedLog, deploymentView)

	// A client whose ContentType is protobuf, as kube-controller-manager's,
	// accepts "protobuf, */*"; the agent may answer JSON.
	protoCfg, protoLog := client()
	protoCfg.ContentType = "application/vnd.kubernetes.protobuf"
	proto := informers.NewSharedInformerFactoryWithOptions(kubernetes.NewForConfigOrDie(protoCfg), 0, informers.WithNamespace(ns))
	add("protobuf-preferring typed pods", "pods", "", proto.Core().V1().Pods().Informer(), protoLog, podView)

	selector := watchedLabel + "=yes"
	filteredCfg, filteredLog := client()
	filtered := informers.NewSharedInformerFactoryWithOptions(kubernetes.NewForConfigOrDie(filteredCfg), 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	add("filtered typed pods", "pods", selector, filtered.Core().V1().Pods().Informer(), filteredLog, podView)

	dynCfg, dynLog := client()
	dyn := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dynamic.NewForConfigOrDie(dynCfg), 0, ns, nil)
	add("dynamic pods", "pods", "", dyn.ForResource(podsGVR).Informer(), dynLog, podView)

	metaCfg, metaLog := client()
	md := metadatainformer.NewFilteredSharedInformerFactory(metadata.NewForConfigOrDie(metaCfg), 0, ns, nil)
	add("metadata pods", "pods", "", md.ForResource(podsGVR).Informer(), metaLog, metadataView)

	for _, f := range []interface {
		Start(<-chan struct{})
		Shutdown()
	}{typed, proto, filtered, dyn, md} {
		f.Start(t.Context().Done())
		// t.Context is done before cleanups run, so Shutdown returns.
		t.Cleanup(f.Shutdown)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, in := range out {
		if !cache.WaitForCacheSync(ctx.Done(), in.inf.HasSynced) {
			t.Fatalf("%s did not sync within 30s; its requests:\n%s", in, in.requests.describe(in.resource))
		}
	}
	return out
}

// held is what the informer holds: name → resourceVersion.
func (in *informer) held() map[string]string {
	out := map[string]string{}
	for _, obj := range in.inf.GetStore().List() {
		if m, err := meta.Accessor(obj); err == nil {
			out[m.GetName()] = m.GetResourceVersion()
		}
	}
	return out
}

// waitSeen waits until the informer's handler, from its call number from
// on, has been called with typ for name, and ok (if not nil) holds.
func (in *informer) waitSeen(t *testing.T, from int, typ, name string, ok func(seen) bool) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("%s to see %s %s", in, typ, name), func() error {
		events := in.events.of(from, name)
		for _, e := range events {
			if e.Type == typ && (ok == nil || ok(e)) {
				return nil
			}
		}
		return fmt.Errorf("its calls for %s: %+v", name, events)
	})
}

// requireConverged waits until each informer holds exactly what
// kube-apiserver lists (names and resourceVersions), then checks that each
// object is the one kube-apiserver serves at that resourceVersion.
func requireConverged(t *testing.T, cs kubernetes.Interface, ns, phase string, infs []*informer) {
	t.Helper()
	for _, in := range infs {
		var want map[string]runtime.Object
		waitFor(t, 60*time.Second, fmt.Sprintf("%s: the %s to hold what kube-apiserver lists", phase, in), func() error {
			var err error
			if want, err = apiObjects(t.Context(), cs, ns, in); err != nil {
				return err
			}
			if diff := cmp.Diff(versions(want), in.held()); diff != "" {
				return fmt.Errorf("name → resourceVersion (-kube-apiserver +informer):\n%s", diff)
			}
			return nil
		})
		for name, obj := range want {
			got, ok, err := in.inf.GetStore().GetByKey(ns + "/" + name)
			if err != nil || !ok {
				continue // gone since: not this check's business
			}
			if m, err := meta.Accessor(got); err != nil || m.GetResourceVersion() != versions(want)[name] {
				continue // changed since
			}
			gotView, err := in.view(got)
			if err != nil {
				t.Errorf("%s: %s: %s %s: %v", phase, in, in.resource, name, err)
				continue
			}
			wantView, err := in.view(obj)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantView, gotView); diff != "" {
				t.Errorf("%s: the %s holds %s %s/%s unlike kube-apiserver at the same resourceVersion (-kube-apiserver +informer):\n%s", phase, in, in.resource, ns, name, diff)
			}
		}
	}
}

// apiObjects lists, from kube-apiserver itself, what in should hold.
func apiObjects(ctx context.Context, cs kubernetes.Interface, ns string, in *informer) (map[string]runtime.Object, error) {
	opts := metav1.ListOptions{LabelSelector: in.selector}
	out := map[string]runtime.Object{}
	switch in.resource {
	case "pods":
		l, err := cs.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			out[l.Items[i].Name] = &l.Items[i]
		}
	case "deployments":
		l, err := cs.AppsV1().Deployments(ns).List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range l.Items {
			out[l.Items[i].Name] = &l.Items[i]
		}
	default:
		return nil, fmt.Errorf("no list for %s", in.resource)
	}
	return out, nil
}

func versions(objs map[string]runtime.Object) map[string]string {
	out := map[string]string{}
	for name, obj := range objs {
		m, _ := meta.Accessor(obj)
		out[name] = m.GetResourceVersion()
	}
	return out
}

// podView is a pod, typed or unstructured, less managedFields, which krm
// leaves out by design.
func podView(obj any) (any, error) {
	var p corev1.Pod
	switch o := obj.(type) {
	case *corev1.Pod:
		p = *o.DeepCopy()
	case *unstructured.Unstructured:
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &p); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("a pods informer holds a %T", obj)
	}
	p.TypeMeta, p.ManagedFields = metav1.TypeMeta{}, nil
	return &p, nil
}

func deploymentView(obj any) (any, error) {
	d, ok := obj.(*appsv1.Deployment)
	if !ok {
		return nil, fmt.Errorf("a deployments informer holds a %T", obj)
	}
	d = d.DeepCopy()
	d.TypeMeta, d.ManagedFields = metav1.TypeMeta{}, nil
	return d, nil
}

// metadataView is an object's ObjectMeta, all a metadata informer holds.
func metadataView(obj any) (any, error) {
	var m metav1.ObjectMeta
	switch o := obj.(type) {
	case *metav1.PartialObjectMetadata:
		m = *o.ObjectMeta.DeepCopy()
	case *corev1.Pod:
		m = *o.ObjectMeta.DeepCopy()
	default:
		return nil, fmt.Errorf("a metadata informer holds a %T", obj)
	}
	m.ManagedFields = nil
	return &m, nil
}

// checkSyncRequests checks that the informer synced from the agent with the
// requests its twin made to kube-apiserver, and the ones the WatchList gate
// calls for: a LIST then a WATCH with it off, a single WatchList with it on,
// answered with the initial-events-end bookmark.
func checkSyncRequests(t *testing.T, in, twin *informer, watchList bool) {
	t.Helper()
	want := []string{"LIST", "WATCH"}
	if watchList {
		want = []string{"WATCHLIST"}
	}
	if got := twin.requests.kinds(twin.resource); !slices.Equal(got, want) {
		t.Errorf("the %s made %v, want %v (is the WatchList gate %v in effect?):\n%s", twin, got, want, watchList, twin.requests.describe(twin.resource))
	}
	if got := in.requests.kinds(in.resource); !slices.Equal(got, want) {
		t.Errorf("the %s made %v, want %v:\n%s", in, got, want, in.requests.describe(in.resource))
		return
	}
	for _, r := range in.requests.matching(in.resource) {
		r := in.requests.snapshot(r)
		if r.code != http.StatusOK {
			t.Errorf("the %s: %s answered %d, want 200", in, r, r.code)
		}
		if r.kind() != "LIST" && r.query.Get("allowWatchBookmarks") != "true" {
			t.Errorf("the %s: %s does not allow bookmarks; client-go always does", in, r)
		}
		if r.kind() == "WATCHLIST" && !r.initialEventsEnded() {
			t.Errorf("the %s: %s: no BOOKMARK annotated %s:\n%s", in, r, initialEventsEndAnnotation, in.requests.describe(in.resource))
		}
		for _, e := range r.events {
			if e.Type == "ERROR" {
				t.Errorf("the %s: %s: an ERROR event (code %d, %s)", in, r, e.Code, e.Reason)
			}
		}
	}
}

// checkRestartRequests checks what the informer asked once the first agent
// had exited, and how it was answered: as against kube-apiserver, a watch
// from the informer's last resourceVersion either resumes or is told 410
// Expired in the stream, whereupon the informer relists once, not older
// than that resourceVersion (with WatchList on, by WatchList, not LIST).
func checkRestartRequests(t *testing.T, in *informer, stopped, ready time.Time, watchList bool) {
	t.Helper()
	var relists []loggedRequest
	expired := false
	for _, rp := range in.requests.matching(in.resource) {
		r := in.requests.snapshot(rp)
		if r.start.Before(stopped) || r.err != nil {
			continue // the first agent's, or no agent listened yet
		}
		if r.code != http.StatusOK {
			// kube-apiserver too answers 429 or 504 while its cache fills.
			if r.start.After(ready) {
				t.Errorf("the %s: %s answered %d after the agent was ready, want 200", in, r, r.code)
			}
			continue
		}
		kind := r.kind()
		if kind == "LIST" && watchList {
			t.Errorf("the %s relisted by LIST (%s) with WatchList on: its WatchList failed", in, r)
		}
		for _, e := range r.events {
			if e.Type != "ERROR" {
				continue
			}
			if kind != "WATCH" || e.Code != http.StatusGone || e.Reason != metav1.StatusReasonExpired {
				t.Errorf("the %s: %s: ERROR event code %d reason %q; kube-apiserver ends only a watch from a resourceVersion it no longer holds, with 410 Expired", in, r, e.Code, e.Reason)
			}
			expired = true
		}
		if (kind == "LIST" && r.query.Get("continue") == "") || (kind == "WATCHLIST" && r.initialEventsEnded()) {
			relists = append(relists, r)
		}
	}
	for _, r := range relists {
		if rv := r.query.Get("resourceVersion"); rv == "" || rv == "0" {
			t.Errorf("the %s relisted from resourceVersion %q (%s): it had been told its last resourceVersion was unavailable, which kube-apiserver says of no LIST or WatchList not older than it", in, rv, r)
		}
	}
	switch {
	case len(relists) > 1 || expired && len(relists) == 0:
		t.Errorf("the %s relisted %d times after the restart (a watch told 410: %v), want once:\n%s", in, len(relists), expired, in.requests.describe(in.resource))
	case expired:
		t.Logf("the %s: 410 Expired, then relisted by %s", in, relists[0])
	case len(relists) == 1:
		t.Logf("the %s relisted by %s without a 410", in, relists[0])
	default:
		t.Logf("the %s resumed its watch", in)
	}
}

// seen is one call of an informer's event handler.
type seen struct {
	Type      string // ADD, UPDATE or DELETE
	Name, RV  string
	Watched   string // watchedLabel's value
	Tombstone bool   // a DELETE of a DeletedFinalStateUnknown
}

type eventLog struct {
	mu     sync.Mutex
	events []seen
}

func (l *eventLog) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { l.record("ADD", obj) },
		UpdateFunc: func(_, obj any) { l.record("UPDATE", obj) },
		DeleteFunc: func(obj any) { l.record("DELETE", obj) },
	}
}

func (l *eventLog) record(typ string, obj any) {
	e := seen{Type: typ}
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		_, e.Name, _ = cache.SplitMetaNamespaceKey(d.Key)
		obj, e.Tombstone = d.Obj, true
	}
	if m, err := meta.Accessor(obj); err == nil {
		e.Name, e.RV, e.Watched = m.GetName(), m.GetResourceVersion(), m.GetLabels()[watchedLabel]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// of returns the calls for name from call number from on.
func (l *eventLog) of(from int, name string) []seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []seen
	for _, e := range l.events[from:] {
		if e.Name == name {
			out = append(out, e)
		}
	}
	return out
}

const initialEventsEndAnnotation = "k8s.io/initial-events-end"

// requestLog records what one client asked and how it was answered,
// reading the events of a JSON watch as they pass.
type requestLog struct {
	mu   sync.Mutex
	reqs []*loggedRequest
}

type loggedRequest struct {
	start  time.Time
	path   string
	query  url.Values
	code   int
	err    error
	events []streamEvent
	// opaque: the stream was not JSON, so its events were not read.
	opaque bool
}

type streamEvent struct {
	Type   string
	RV     string
	End    bool // annotated initialEventsEndAnnotation
	Code   int32
	Reason metav1.StatusReason
}

// kind is LIST, WATCH or WATCHLIST (a watch with sendInitialEvents=true).
func (r *loggedRequest) kind() string {
	switch {
	case r.query.Get("watch") != "true" && r.query.Get("watch") != "1":
		return "LIST"
	case r.query.Get("sendInitialEvents") == "true":
		return "WATCHLIST"
	}
	return "WATCH"
}

func (r *loggedRequest) initialEventsEnded() bool {
	return slices.ContainsFunc(r.events, func(e streamEvent) bool { return e.Type == "BOOKMARK" && e.End })
}

func (r loggedRequest) String() string {
	return fmt.Sprintf("%s %s?%s at %s", r.kind(), r.path, r.query.Encode(), r.start.Format("15:04:05.000"))
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		r := &loggedRequest{start: time.Now(), path: req.URL.Path, query: req.URL.Query()}
		l.mu.Lock()
		l.reqs = append(l.reqs, r)
		l.mu.Unlock()
		resp, err := rt.RoundTrip(req)
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			r.err = err
			return resp, err
		}
		r.code = resp.StatusCode
		if r.kind() != "LIST" {
			if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				resp.Body = &watchBody{ReadCloser: resp.Body, log: l, req: r}
			} else {
				r.opaque = true
			}
		}
		return resp, nil
	})
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// watchBody reads the newline-framed JSON events of a watch as the client
// reads them.
type watchBody struct {
	io.ReadCloser
	log     *requestLog
	req     *loggedRequest
	pending []byte
}

func (b *watchBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.pending = append(b.pending, p[:n]...)
	for {
		i := bytes.IndexByte(b.pending, '\n')
		if i < 0 {
			break
		}
		b.log.addEvent(b.req, b.pending[:i])
		b.pending = b.pending[i+1:]
	}
	return n, err
}

func (l *requestLog) addEvent(r *loggedRequest, line []byte) {
	var ev struct {
		Type   string `json:"type"`
		Object struct {
			Code     int32               `json:"code"`
			Reason   metav1.StatusReason `json:"reason"`
			Metadata struct {
				ResourceVersion string            `json:"resourceVersion"`
				Annotations     map[string]string `json:"annotations"`
			} `json:"metadata"`
		} `json:"object"`
	}
	e := streamEvent{Type: "UNPARSABLE"}
	if json.Unmarshal(line, &ev) == nil {
		e = streamEvent{Type: ev.Type, RV: ev.Object.Metadata.ResourceVersion, End: ev.Object.Metadata.Annotations[initialEventsEndAnnotation] == "true"}
		if ev.Type == "ERROR" {
			e.Code, e.Reason = ev.Object.Code, ev.Object.Reason
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	r.events = append(r.events, e)
}

// matching returns the requests to a collection of resource.
func (l *requestLog) matching(resource string) []*loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*loggedRequest
	for _, r := range l.reqs {
		if strings.HasSuffix(r.path, "/"+resource) {
			out = append(out, r)
		}
	}
	return out
}

// snapshot copies r as it is now.
func (l *requestLog) snapshot(r *loggedRequest) loggedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := *r
	c.events = slices.Clone(r.events)
	return c
}

func (l *requestLog) kinds(resource string) []string {
	var out []string
	for _, r := range l.matching(resource) {
		out = append(out, r.kind())
	}
	return out
}

// describe lists the requests to a collection of resource, one a line, with
// their answers.
func (l *requestLog) describe(resource string) string {
	var b strings.Builder
	for _, rp := range l.matching(resource) {
		r := l.snapshot(rp)
		fmt.Fprintf(&b, "  %s → ", r)
		switch {
		case r.err != nil:
			fmt.Fprintf(&b, "%v", r.err)
		case r.opaque:
			fmt.Fprintf(&b, "%d (stream not read)", r.code)
		default:
			fmt.Fprintf(&b, "%d", r.code)
		}
		for _, e := range r.events {
			fmt.Fprintf(&b, " %s@%s", e.Type, e.RV)
			if e.End {
				b.WriteString("(initial-events-end)")
			}
			if e.Type == "ERROR" {
				fmt.Fprintf(&b, "(%d %s)", e.Code, e.Reason)
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func createPod(t *testing.T, cs kubernetes.Interface, ns, name string, watched bool) {
	t.Helper()
	labels := map[string]string{"app": name}
	if watched {
		labels[watchedLabel] = "yes"
	}
	_, err := cs.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{informerContainer()}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s: %v", name, err)
	}
}

func informerContainer() corev1.Container {
	return corev1.Container{
		Name: "main", Image: "krm-e2e/informer:1",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
		}},
	}
}

// patchPod merge-patches the pod and returns its new resourceVersion.
func patchPod(t *testing.T, cs kubernetes.Interface, ns, name, patch string) string {
	t.Helper()
	p, err := cs.CoreV1().Pods(ns).Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("patching pod %s with %s: %v", name, patch, err)
	}
	return p.ResourceVersion
}

// deletePod deletes the pod at once, without waiting for its node.
func deletePod(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	if err := cs.CoreV1().Pods(ns).Delete(t.Context(), name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatalf("deleting pod %s: %v", name, err)
	}
}

func createDeployment(t *testing.T, cs kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": name}
	_, err := cs.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{informerContainer()}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment %s: %v", name, err)
	}
}

func scaleDeployment(t *testing.T, cs kubernetes.Interface, ns, name string, replicas int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := cs.AppsV1().Deployments(ns).Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scaling deployment %s to %d: %v", name, replicas, err)
	}
}
