package api

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/krm-project/krm/pkg/store"
)

func TestGetObject(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	r := get(t, ts, "/api/v1/resources/pods/namespaces/dev/api-2")
	if r.status != 200 {
		t.Fatalf("status = %d, want 200; body: %s", r.status, r.body)
	}

	var pod corev1.Pod
	if err := json.Unmarshal(r.body, &pod); err != nil {
		t.Fatalf("the answer does not decode as a Pod: %v", err)
	}
	if diff := cmp.Diff(*newPod(testPods[1]), pod); diff != "" {
		t.Errorf("pod (-want +got):\n%s", diff)
	}

	var u unstructured.Unstructured
	if err := u.UnmarshalJSON(r.body); err != nil {
		t.Fatalf("the answer does not decode as unstructured: %v", err)
	}
	if u.GetKind() != "Pod" || u.GetName() != "api-2" {
		t.Errorf("unstructured kind %q name %q, want Pod api-2", u.GetKind(), u.GetName())
	}

	var withKrm struct{ Krm ObjectMeta }
	if err := json.Unmarshal(r.body, &withKrm); err != nil {
		t.Fatal(err)
	}
	row := podRow(t, testPods[1])
	want := ObjectMeta{
		Header: FrameHeader{Cluster: "test", Resource: "pods", View: "aggregated", ResourceVersion: "120",
			VerifiedAt: testVerifiedAt, VerifiedResourceVersion: "104", Rows: 5, Returned: 1},
		Row: RowMeta{UID: row.UID, Namespace: "dev", Name: "api-2", ResourceVersion: "102", Source: "streamed", ObservedAt: row.ObservedAt},
	}
	if diff := cmp.Diff(want, withKrm.Krm); diff != "" {
		t.Errorf("krm (-want +got):\n%s", diff)
	}
}

func TestGetClusterScopedAndViews(t *testing.T) {
	b, _, _ := newTestBackend(t)
	ts, _ := newTestServer(t, b)
	tests := []struct {
		path   string
		status int
		name   string
	}{
		{"/api/v1/resources/nodes/n2", 200, "n2"},
		{"/api/v1/resources/node/n3?view=verified", 200, "n3"},
		{"/api/v1/resources/pods/namespaces/prod/db-0?view=streamed", 200, "db-0"},
		// prod/db-0 came from the watch: the verified view does not have it.
		{"/api/v1/resources/pods/namespaces/prod/db-0?view=verified", 404, ""},
		{"/api/v1/resources/pods/namespaces/dev-2/api-1", 200, "api-1"},
	}
	for _, tt := range tests {
		r := get(t, ts, tt.path)
		if r.status != tt.status {
			t.Errorf("GET %s: status %d, want %d; body: %s", tt.path, r.status, tt.status, r.body)
			continue
		}
		if tt.status != 200 {
			continue
		}
		var obj struct{ Metadata struct{ Name string } }
		if err := json.Unmarshal(r.body, &obj); err != nil || obj.Metadata.Name != tt.name {
			t.Errorf("GET %s: name %q (%v), want %q", tt.path, obj.Metadata.Name, err, tt.name)
		}
	}
}

// The krm member is spliced into the stored bytes, so the edge cases of
// those bytes matter: an empty object and trailing whitespace.
func TestGetSplicesIntoAnyObject(t *testing.T) {
	for _, stored := range []string{`{}`, "{ }\n", `{"kind":"Node","metadata":{"name":"n1"}}` + "\n\t"} {
		b, _, nodes := newTestBackend(t)
		snap := *nodes.snaps[store.Aggregated]
		snap.Rows = []*store.Row{{UID: "u", Name: "n1", Source: store.Verified, Object: []byte(stored)}}
		nodes.snaps[store.Aggregated] = &snap
		ts, _ := newTestServer(t, b)

		r := get(t, ts, "/api/v1/resources/nodes/n1")
		var m map[string]json.RawMessage
		if err := json.Unmarshal(r.body, &m); err != nil {
			t.Errorf("stored %q: the answer is not a JSON object: %v: %s", stored, err, r.body)
			continue
		}
		if _, ok := m["krm"]; !ok {
			t.Errorf("stored %q: the answer has no krm member: %s", stored, r.body)
		}
		obj, meta, err := DecodeObject(r.body)
		if err != nil {
			t.Fatalf("DecodeObject: %v", err)
		}
		if got, want := compact(t, obj), compact(t, []byte(stored)); got != want {
			t.Errorf("stored %q: DecodeObject object %s, want %s", stored, got, want)
		}
		if meta.Row.Name != "n1" {
			t.Errorf("stored %q: krm row name %q, want n1", stored, meta.Row.Name)
		}
	}
}

func TestDecodeObject(t *testing.T) {
	krm := `{"header":{"resource":"pods","view":"verified","rows":3,"returned":1},"row":{"uid":"u","name":"a","resourceVersion":"5","source":"verified"}}`
	wantMeta := ObjectMeta{
		Header: FrameHeader{Resource: "pods", View: "verified", Rows: 3, Returned: 1},
		Row:    RowMeta{UID: "u", Name: "a", ResourceVersion: "5", Source: "verified"},
	}
	tests := []struct {
		name, in, want string
		meta           ObjectMeta
	}{
		{"last", `{"kind":"Pod","spec":{"krm":1},"krm":` + krm + `}`, `{"kind":"Pod","spec":{"krm":1}}`, wantMeta},
		{"first", `{ "krm" : ` + krm + ` , "kind":"Pod"}`, `{ "kind":"Pod"}`, wantMeta},
		{"middle", `{"a":[1,{"krm":2}],"krm":` + krm + `,"b":"krm"}`, `{"a":[1,{"krm":2}],"b":"krm"}`, wantMeta},
		{"only", `{"krm":` + krm + `}`, `{}`, wantMeta},
		{"absent", `{"kind":"Pod"}` + "\n", `{"kind":"Pod"}`, ObjectMeta{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj, meta, err := DecodeObject([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			// Whitespace around the removed member is not specified.
			if got, want := compact(t, obj), compact(t, []byte(tt.want)); got != want {
				t.Errorf("object = %s, want %s", obj, tt.want)
			}
			if diff := cmp.Diff(tt.meta, meta); diff != "" {
				t.Errorf("meta (-want +got):\n%s", diff)
			}
		})
	}
	for _, bad := range []string{``, `[]`, `"x"`, `{"a":`, `{"krm":"not meta"}`} {
		if _, _, err := DecodeObject([]byte(bad)); err == nil || !strings.Contains(err.Error(), "decoding object") {
			t.Errorf("DecodeObject(%q) error = %v, want one saying it failed decoding the object", bad, err)
		}
	}
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}
