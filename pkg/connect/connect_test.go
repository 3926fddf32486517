package connect

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

var created = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// podState describes a pod: by default in krm-system, labelled as the
// agent, created minute minutes after created.
type podState struct {
	name, namespace string
	minute          int
	phase           corev1.PodPhase
	ready           corev1.ConditionStatus // "" for no Ready condition
	readyReason     string
	terminating     bool
	labels          map[string]string
}

func (s podState) pod() *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.name, Namespace: s.namespace, Labels: s.labels,
			CreationTimestamp: metav1.NewTime(created.Add(time.Duration(s.minute) * time.Minute)),
		},
		Status: corev1.PodStatus{Phase: s.phase},
	}
	if p.Namespace == "" {
		p.Namespace = DefaultNamespace
	}
	if p.Labels == nil {
		p.Labels = map[string]string{"app.kubernetes.io/name": "krm-agent"}
	}
	if s.ready != "" {
		p.Status.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: s.ready, Reason: s.readyReason},
		}
	}
	if s.terminating {
		now := metav1.NewTime(created.Add(time.Hour))
		p.DeletionTimestamp = &now
		p.Finalizers = []string{"krm.test/hold"}
	}
	return p
}

func running(name string, minute int) podState {
	return podState{name: name, minute: minute, phase: corev1.PodRunning, ready: corev1.ConditionTrue}
}

func defaults() Options {
	return Options{Namespace: DefaultNamespace, Selector: DefaultSelector, Port: DefaultPort}
}

func TestFindPodPicksTheNewestReadyPod(t *testing.T) {
	tests := []struct {
		name string
		pods []podState
		opts Options
		want string
	}{
		{"one", []podState{running("a", 0)}, defaults(), "a"},
		{"newest of the ready", []podState{running("old", 0), running("new", 2), running("mid", 1)}, defaults(), "new"},
		{
			"not-ready and pending pods are passed over",
			[]podState{
				running("ready", 0),
				{name: "starting", minute: 5, phase: corev1.PodRunning, ready: corev1.ConditionFalse},
				{name: "pending", minute: 6, phase: corev1.PodPending},
				{name: "done", minute: 7, phase: corev1.PodSucceeded, ready: corev1.ConditionTrue},
			},
			defaults(), "ready",
		},
		{
			// During a rollout the old pod is terminating but still Ready.
			"terminating pods are passed over",
			[]podState{running("next", 1), {name: "going", minute: 9, phase: corev1.PodRunning, ready: corev1.ConditionTrue, terminating: true}},
			defaults(), "next",
		},
		{
			"other labels and namespaces are not looked at",
			[]podState{
				running("agent", 0),
				{name: "imposter", minute: 9, phase: corev1.PodRunning, ready: corev1.ConditionTrue, labels: map[string]string{"app.kubernetes.io/name": "web"}},
				{name: "elsewhere", namespace: "default", minute: 9, phase: corev1.PodRunning, ready: corev1.ConditionTrue},
			},
			defaults(), "agent",
		},
		{
			"custom namespace and selector",
			[]podState{
				running("default-agent", 9),
				{name: "mine", namespace: "tools", minute: 0, phase: corev1.PodRunning, ready: corev1.ConditionTrue, labels: map[string]string{"app": "krm", "tier": "cache"}},
			},
			Options{Namespace: "tools", Selector: "app=krm,tier in (cache)"}, "mine",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			for _, s := range tt.pods {
				objs = append(objs, s.pod())
			}
			cs := fake.NewClientset(objs...)
			pod, err := findPod(t.Context(), cs, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if pod.Name != tt.want {
				t.Errorf("picked %s, want %s", pod.Name, tt.want)
			}
		})
	}
}

func TestFindPodErrors(t *testing.T) {
	hint := "install the agent with `kubectl apply -k <krm>/manifests`, point at it with --agent-namespace and --agent-selector, or give its address with --agent-url"
	if InstallHint != hint {
		t.Errorf("InstallHint is %q, want %q", InstallHint, hint)
	}
	tests := []struct {
		name string
		pods []podState
		opts Options
		want string
	}{
		{
			"no pod", nil, defaults(),
			`no krm agent pod in namespace "krm-system" with selector "app.kubernetes.io/name=krm-agent": ` + hint,
		},
		{
			"no pod matching the selector", []podState{running("a", 0)}, Options{Namespace: DefaultNamespace, Selector: "app=other"},
			`no krm agent pod in namespace "krm-system" with selector "app=other": ` + hint,
		},
		{
			// Newest first, each with what keeps it from serving.
			"none ready",
			[]podState{
				{name: "old", minute: 0, phase: corev1.PodRunning, ready: corev1.ConditionTrue, terminating: true},
				{name: "scheduled", minute: 1, phase: corev1.PodPending},
				{name: "starting", minute: 2, phase: corev1.PodRunning, ready: corev1.ConditionFalse, readyReason: "ContainersNotReady"},
				{name: "probing", minute: 3, phase: corev1.PodRunning, ready: corev1.ConditionFalse},
			},
			defaults(),
			"the krm agent is not ready: no pod in namespace krm-system with selector app.kubernetes.io/name=krm-agent is Running and Ready: " +
				"probing (Running, not ready), starting (Running, not ready: ContainersNotReady), scheduled (Pending), old (Running, terminating); " +
				"check `kubectl -n krm-system describe pod` and the agent's /readyz",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var objs []runtime.Object
			for _, s := range tt.pods {
				objs = append(objs, s.pod())
			}
			_, err := findPod(t.Context(), fake.NewClientset(objs...), tt.opts)
			if err == nil {
				t.Fatal("found a pod, want an error")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFindPodListFails(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New(`User "jane" cannot list resource "pods" in API group "" in the namespace "krm-system"`))
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"forbidden", forbidden, "not allowed to find the krm agent: listing pods in namespace krm-system needs the RBAC permission list on pods there: " + forbidden.Error()},
		{"other", errors.New("connection reset by peer"), "finding the krm agent (pods in namespace krm-system with selector app.kubernetes.io/name=krm-agent): connection reset by peer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := fake.NewClientset()
			cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				return true, nil, tt.err
			})
			_, err := findPod(t.Context(), cs, defaults())
			if err == nil {
				t.Fatal("found a pod, want an error")
			}
			if diff := cmp.Diff(tt.want, err.Error()); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v does not wrap %v", err, tt.err)
			}
		})
	}
}

// agentServer answers /healthz with health and krm.io's AgentStatus with
// status (a code, and a Kubernetes Status unless 200).
func agentServer(t *testing.T, health, status int) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(health)
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /apis/krm.io/v1alpha1/agentstatuses/agent", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status != http.StatusOK {
			st := metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: int32(status), Message: "the store is unreachable"}
			_ = json.NewEncoder(w).Encode(st)
			return
		}
		_ = json.NewEncoder(w).Encode(krmv1alpha1.AgentStatus{
			TypeMeta:   metav1.TypeMeta{Kind: "AgentStatus", APIVersion: "krm.io/v1alpha1"},
			ObjectMeta: metav1.ObjectMeta{Name: "agent"},
			Status:     krmv1alpha1.AgentState{AgentVersion: "v9", Ready: true},
		})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestConnectURL(t *testing.T) {
	srv := agentServer(t, http.StatusOK, http.StatusOK)
	// A URL needs no Kubernetes configuration.
	conn, err := Connect(t.Context(), nil, Options{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if conn.URL != srv.URL || conn.Pod != "" {
		t.Errorf("connection: URL %q, pod %q; want %q and none", conn.URL, conn.Pod, srv.URL)
	}
	if conn.Agent == nil || conn.Agent.Status.AgentVersion != "v9" {
		t.Errorf("the connection's agent status: %+v, want the agent's answer", conn.Agent)
	}
	if conn.Client.URL() != srv.URL {
		t.Errorf("the connection's client reads %s, want %s", conn.Client.URL(), srv.URL)
	}
}

func TestConnectErrors(t *testing.T) {
	// Version skew: an agent that is alive but serves no krm.io/v1alpha1.
	skewed := agentServer(t, http.StatusOK, http.StatusNotFound)
	// An agent from before krm.io: its mux answers 404 in plain text.
	oldMux := http.NewServeMux()
	oldMux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	oldMux.HandleFunc("GET /api/v1/resources", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"resources":[]}`)) })
	old := httptest.NewServer(oldMux)
	t.Cleanup(old.Close)
	broken := agentServer(t, http.StatusOK, http.StatusServiceUnavailable)
	sick := agentServer(t, http.StatusInternalServerError, http.StatusOK)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()

	tests := []struct {
		name string
		cfg  *rest.Config
		opts Options
		// want is the whole message, or its start when it ends in "…".
		want string
	}{
		{
			"version skew", nil, Options{URL: skewed.URL},
			fmt.Sprintf("version skew: the agent at %s does not serve krm's API krm.io/v1alpha1 that this plugin speaks; install matching versions of the plugin and the agent (`kubectl krm version` shows both)", skewed.URL),
		},
		{
			"agent without krm.io", nil, Options{URL: old.URL},
			fmt.Sprintf("version skew: the agent at %s does not serve krm's API krm.io/v1alpha1 that this plugin speaks; install matching versions of the plugin and the agent (`kubectl krm version` shows both)", old.URL),
		},
		{"unreachable", nil, Options{URL: closed}, fmt.Sprintf("the krm agent at %s is unreachable: reaching the krm agent: GET %[1]s/healthz: …", closed)},
		{"unhealthy", nil, Options{URL: sick.URL}, fmt.Sprintf("the krm agent at %s is unreachable: …", sick.URL)},
		{"failing", nil, Options{URL: broken.URL}, fmt.Sprintf("the krm agent at %s: the store is unreachable", broken.URL)},
		{"bad URL", nil, Options{URL: "127.0.0.1:8080"}, `--agent-url "127.0.0.1:8080": invalid agent URL "127.0.0.1:8080": …`},
		{"no URL and no kubeconfig", nil, Options{}, "no Kubernetes client configuration to find the agent with; give --agent-url or a kubeconfig"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Connect(t.Context(), tt.cfg, tt.opts)
			if err == nil {
				t.Fatal("connected, want an error")
			}
			got := err.Error()
			if prefix, ok := strings.CutSuffix(tt.want, "…"); ok {
				if !strings.HasPrefix(got, prefix) {
					t.Errorf("error %q, want it to start with %q", got, prefix)
				}
				return
			}
			if got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
		})
	}
}

// fakeAPIServer serves just enough of kube-apiserver for Connect: a pod
// list, and a port-forward that RBAC refuses. It records the pod lists'
// paths and queries.
func fakeAPIServer(t *testing.T, pods *corev1.PodList) (*rest.Config, *[]string) {
	t.Helper()
	var lists []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods", func(w http.ResponseWriter, r *http.Request) {
		lists = append(lists, r.URL.Path+"?"+r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(pods)
	})
	mux.HandleFunc("/api/v1/namespaces/{ns}/pods/{name}/portforward", func(w http.ResponseWriter, r *http.Request) {
		status := apierrors.NewForbidden(schema.GroupResource{Resource: "pods/portforward"}, r.PathValue("name"),
			fmt.Errorf(`User "jane" cannot create resource "pods/portforward" in API group "" in the namespace %q`, r.PathValue("ns"))).ErrStatus
		status.APIVersion, status.Kind = "v1", "Status"
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(status)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &rest.Config{Host: srv.URL}, &lists
}

func TestConnectLooksWhereTheManifestsInstall(t *testing.T) {
	cfg, lists := fakeAPIServer(t, &corev1.PodList{})
	_, err := Connect(t.Context(), cfg, Options{})
	want := `no krm agent pod in namespace "krm-system" with selector "app.kubernetes.io/name=krm-agent": ` + InstallHint
	if err == nil || err.Error() != want {
		t.Errorf("Connect with default options: %v, want %q", err, want)
	}
	if diff := cmp.Diff([]string{"/api/v1/namespaces/krm-system/pods?labelSelector=app.kubernetes.io%2Fname%3Dkrm-agent"}, *lists); diff != "" {
		t.Errorf("pod lists (-want +got):\n%s", diff)
	}
}

func TestConnectPortForwardForbidden(t *testing.T) {
	pod := running("krm-agent-0", 0).pod()
	cfg, _ := fakeAPIServer(t, &corev1.PodList{Items: []corev1.Pod{*pod}})
	_, err := Connect(t.Context(), cfg, Options{})
	if !errors.Is(err, ErrPortForwardForbidden) {
		t.Fatalf("Connect: %v, want ErrPortForwardForbidden", err)
	}
	want := "port-forward forbidden: port-forward to pod krm-system/krm-agent-0 needs the RBAC permission create on pods/portforward in namespace krm-system: "
	if !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), `cannot create resource "pods/portforward"`) {
		t.Errorf("error %q, want it to start with %q and keep the API server's reason", err, want)
	}
}
