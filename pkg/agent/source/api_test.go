package source

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// watchListSource is an API (JSON, not Tables) on a server that
// answers every request with body and code.
func watchListSource(t *testing.T, code int, body string) *API {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	client, err := NewRESTClient(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return NewAPI(client, schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, "default", false)
}

// WatchList reads the initial events up to the initial-events-end
// bookmark; a server without WatchList is told apart (ErrNoWatchList) so
// the verifier LISTs instead, and a cut or failed one is an error.
func TestWatchListSource(t *testing.T) {
	cm := func(name, rv string) string {
		return fmt.Sprintf(`{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":%q,"namespace":"default","uid":"u-%s","resourceVersion":%q}}}`, name, name, rv)
	}
	end := `{"type":"BOOKMARK","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"resourceVersion":"90","annotations":{"k8s.io/initial-events-end":"true"}}}}`
	for _, tc := range []struct {
		name, body string
		code       int
		wantRV     string
		wantNames  []string
		wantErr    string
		noWatch    bool
	}{
		{name: "complete", code: 200, body: cm("a", "10") + "\n" + cm("b", "20") + "\n" + end + "\n" + cm("late", "95"), wantRV: "90", wantNames: []string{"a", "b"}},
		{name: "cut before the bookmark", code: 200, body: cm("a", "10") + "\n", wantErr: "the watch ended before its initial events did"},
		{name: "no WatchList: a change before the bookmark", code: 200, body: `{"type":"MODIFIED","object":{"metadata":{"name":"a"}}}`, wantErr: "does not support WatchList", noWatch: true},
		{name: "no WatchList: 400", code: 400, body: `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"BadRequest","message":"resourceVersionMatch is forbidden for watch","code":400}`, wantErr: "forbidden for watch", noWatch: true},
		{name: "expired", code: 200, body: `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Expired","message":"too old resource version","code":410}}`, wantErr: "too old resource version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var names []string
			rv, err := watchListSource(t, tc.code, tc.body).WatchList(t.Context(), metav1.ListOptions{}, func(it Item) error {
				var o struct {
					Metadata metav1.ObjectMeta `json:"metadata"`
				}
				if err := json.Unmarshal(it.Object, &o); err != nil {
					return err
				}
				names = append(names, o.Metadata.Name)
				return nil
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tc.wantErr)
				}
				if got := errors.Is(err, ErrNoWatchList); got != tc.noWatch {
					t.Errorf("errors.Is(err, ErrNoWatchList) = %v, want %v", got, tc.noWatch)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rv != tc.wantRV || !cmp.Equal(names, tc.wantNames) {
				t.Errorf("got rv %q and %v, want %q and %v", rv, names, tc.wantRV, tc.wantNames)
			}
		})
	}
}
