package source

import (
	"encoding/json"
	"testing"
)

func TestRawMeta(t *testing.T) {
	for _, c := range []struct {
		name, in, uid, rv string
		fails             bool
	}{
		{name: "pod", in: `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","uid":"u-1","resourceVersion":"42","managedFields":[{"manager":"x","fieldsV1":{"f:a":{}}}]},"spec":{}}`, uid: "u-1", rv: "42"},
		{name: "spaces and order", in: " { \"spec\" : {\"a\":[1,2,{\"b\":\"}\"}]} ,\n \"metadata\" : { \"resourceVersion\" : \"7\" , \"uid\" : \"x\" } } ", uid: "x", rv: "7"},
		{name: "escaped key elsewhere", in: `{"a\"b":"c\\","metadata":{"labels":{"k":"v\"}"},"uid":"u","resourceVersion":"1"}}`, uid: "u", rv: "1"},
		{name: "escaped value", in: `{"metadata":{"uid":"\u0075","resourceVersion":"2"}}`, uid: "u", rv: "2"},
		{name: "repeated key, last wins", in: `{"metadata":{"uid":"a","resourceVersion":"1","uid":"b"}}`, uid: "b", rv: "1"},
		{name: "no resourceVersion", in: `{"metadata":{"uid":"a"}}`, uid: "a"},
		{name: "numbers and literals", in: `{"a":-1.5e3,"b":true,"c":null,"metadata":{"generation":3,"uid":"u","resourceVersion":"9"}}`, uid: "u", rv: "9"},
		{name: "no metadata", in: `{"kind":"Pod"}`, fails: true},
		{name: "uid not a string", in: `{"metadata":{"uid":5,"resourceVersion":"1"}}`, fails: true},
	} {
		uid, rv, err := RawMeta([]byte(c.in))
		if c.fails {
			if err == nil {
				t.Errorf("%s: got %q %q, want an error", c.name, uid, rv)
			}
			continue
		}
		if err != nil || uid != c.uid || rv != c.rv {
			t.Errorf("%s: got %q %q %v, want %q %q", c.name, uid, rv, err, c.uid, c.rv)
		}
	}
}

// FuzzRawMeta checks the scanner against encoding/json on objects that
// encoding/json writes, so without repeated top-level keys.
func FuzzRawMeta(f *testing.F) {
	f.Add("u", "1", "k", "v", 3.5, true)
	f.Add("a\"b", "\u2028", "metadata", `{"x":]`, -0.0, false)
	f.Fuzz(func(t *testing.T, uid, rv, key, val string, num float64, flag bool) {
		meta := map[string]any{"uid": uid, "resourceVersion": rv, key: val, "n": num}
		obj := map[string]any{"kind": key, "metadata": meta, "spec": map[string]any{key: []any{val, num, flag, nil}}}
		if key != "metadata" {
			obj[key] = val
		}
		b, err := json.Marshal(obj)
		if err != nil {
			return
		}
		var want struct {
			Metadata struct {
				UID             string `json:"uid"`
				ResourceVersion string `json:"resourceVersion"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		gotUID, gotRV, err := RawMeta(b)
		if err != nil || gotUID != want.Metadata.UID || gotRV != want.Metadata.ResourceVersion {
			t.Fatalf("%s: got %q %q %v, want %q %q", b, gotUID, gotRV, err, want.Metadata.UID, want.Metadata.ResourceVersion)
		}
	})
}

func BenchmarkRawMeta(b *testing.B) {
	pod := []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-7d9f","namespace":"default","uid":"0d6b8c6e-3f0a-4b8e-9a55-6f1f5e0c2b11","resourceVersion":"123456","creationTimestamp":"2026-12-06T08:00:00Z","labels":{"app":"web","pod-template-hash":"7d9f"},"managedFields":[{"manager":"kube-controller-manager","operation":"Update","apiVersion":"v1","time":"2026-12-06T08:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{}}}}}}]},"spec":{"containers":[{"name":"web","image":"nginx:1.27","resources":{}}],"nodeName":"node-1"},"status":{"phase":"Running"}}`)
	b.SetBytes(int64(len(pod)))
	for b.Loop() {
		if _, _, err := RawMeta(pod); err != nil {
			b.Fatal(err)
		}
	}
}
