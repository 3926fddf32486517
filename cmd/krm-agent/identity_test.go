package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/store"
)

// identities is a store that records cluster identities, as store.Redis
// does.
type identities struct {
	*store.Memory
	uids map[string]string
}

func (s *identities) RememberClusterUID(_ context.Context, name, uid string) error {
	s.uids[name] = uid
	return nil
}

func (s *identities) RememberedClusterUID(_ context.Context, name string) (string, error) {
	return s.uids[name], nil
}

// TestClusterUID: the agent keys Redis by kube-system's UID when it may
// read it, and records it; without the RBAC it says why and falls back to
// the cluster's name; when kube-apiserver fails it uses the UID recorded
// last time, so a warm start finds its frames.
func TestClusterUID(t *testing.T) {
	const uid = "9b1f3c2e-5d4a-4c6b-8e7f-0a1b2c3d4e5f"
	ns := `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"kube-system","uid":"` + uid + `"}}`
	forbidden := `{"apiVersion":"v1","kind":"Status","status":"Failure","message":"namespaces \"kube-system\" is forbidden","reason":"Forbidden","code":403}`
	unavailable := `{"apiVersion":"v1","kind":"Status","status":"Failure","message":"etcd is down","reason":"InternalError","code":500}`
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		remembered string
		want       string
		log        string
	}{
		{"readable", http.StatusOK, ns, "", uid, "kubeSystemUID=" + uid},
		{"forbidden", http.StatusForbidden, forbidden, "old-uid", "", "cannot read the cluster's identity; keying stored frames by the cluster's name"},
		{"failing, recorded before", http.StatusInternalServerError, unavailable, "old-uid", "old-uid", "using the one recorded for this cluster name last time"},
		{"failing, never recorded", http.StatusInternalServerError, unavailable, "", "", "nor find the one recorded last time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/v1/namespaces/kube-system" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			st := &identities{Memory: store.NewMemory(), uids: map[string]string{}}
			if tc.remembered != "" {
				st.uids["prod"] = tc.remembered
			}
			var logs bytes.Buffer
			o := &Options{Store: "redis"}
			got := o.clusterUID(t.Context(), &rest.Config{Host: srv.URL}, "prod", st, slog.New(slog.NewTextHandler(&logs, nil)))
			if got != tc.want {
				t.Errorf("clusterUID = %q, want %q", got, tc.want)
			}
			if !strings.Contains(logs.String(), tc.log) || !strings.Contains(logs.String(), "cluster=prod") {
				t.Errorf("log does not say %q about cluster prod:\n%s", tc.log, logs.String())
			}
			if tc.status == http.StatusOK && st.uids["prod"] != uid {
				t.Errorf("the store recorded %q for prod, want %q", st.uids["prod"], uid)
			}
		})
	}
	if got := (&Options{Store: "memory"}).clusterUID(t.Context(), &rest.Config{Host: "http://127.0.0.1:1"}, "prod", store.NewMemory(), slog.New(slog.DiscardHandler)); got != "" {
		t.Errorf("clusterUID with the memory store = %q, want none asked", got)
	}
}
