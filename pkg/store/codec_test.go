package store

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testFrame(n int) *Frame {
	f := &Frame{Header: Header{
		Cluster: "prod", Resource: "pods", Source: Aggregated, ResourceVersion: 4242,
		VerifiedAt: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC),
	}}
	for i := range n {
		r := &Row{
			UID: fmt.Sprintf("uid-%d", i), Namespace: "default", Name: fmt.Sprintf("pod-%d", i),
			ResourceVersion: uint64(100 + i), Source: Verified,
			ObservedAt: time.Date(2026, 11, 29, 12, 0, i, 0, time.UTC),
			Object:     fmt.Appendf(nil, `{"kind":"Pod","metadata":{"name":"pod-%d"}}`, i),
			Labels:     map[string]string{"app": "web"},
			Fields:     map[string]string{"spec.nodeName": "node-1", "status.phase": "Running"},
		}
		if i%3 == 2 {
			r.Source, r.Deleted = Streamed, true
		}
		if i%2 == 1 {
			r.Cells = fmt.Appendf(nil, `["pod-%d",1,"5m"]`, i)
		}
		f.Rows = append(f.Rows, r)
	}
	return f
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := testFrame(n)
			data, err := Encode(in)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			want := *in
			want.Header.Version, want.Header.Rows = FrameVersion, n
			if n == 0 {
				want.Rows = []*Row{}
			}
			if diff := cmp.Diff(&want, out); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeFrameWithoutCells: a frame written before rows had Cells
// decodes, with nil Cells.
func TestDecodeFrameWithoutCells(t *testing.T) {
	// oldRow is Row as it was before Cells.
	type oldRow struct {
		UID, Namespace, Name string
		ResourceVersion      uint64
		Source               Source
		ObservedAt           time.Time
		Deleted              bool
		Object               []byte
		Labels, Fields       map[string]string
	}
	h := Header{Version: FrameVersion, Cluster: "prod", Resource: "configmaps", Source: Verified, ResourceVersion: 7, Rows: 1}
	old := oldRow{UID: "u", Namespace: "default", Name: "a", ResourceVersion: 7, Source: Verified, Object: []byte(`{"kind":"ConfigMap"}`)}
	var buf bytes.Buffer
	enc := gob.NewEncoder(&buf)
	if err := enc.Encode(&h); err != nil {
		t.Fatal(err)
	}
	if err := enc.Encode(&old); err != nil {
		t.Fatal(err)
	}
	f, err := Decode(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := &Row{UID: "u", Namespace: "default", Name: "a", ResourceVersion: 7, Source: Verified, Object: []byte(`{"kind":"ConfigMap"}`)}
	if d := cmp.Diff([]*Row{want}, f.Rows); d != "" {
		t.Errorf("rows (-want +got):\n%s", d)
	}
}

func TestDecodeRejectsUnknownVersion(t *testing.T) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&Header{Version: FrameVersion + 1, Resource: "pods"}); err != nil {
		t.Fatal(err)
	}
	_, err := Decode(buf.Bytes())
	if !errors.Is(err, ErrVersion) {
		t.Fatalf("Decode of version %d: err = %v, want ErrVersion", FrameVersion+1, err)
	}
}

func TestDecodeRejectsCorruptFrames(t *testing.T) {
	data, err := Encode(testFrame(10))
	if err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string][]byte{
		"empty":          nil,
		"garbage":        []byte("not a gob frame"),
		"truncated":      data[:len(data)/2],
		"one byte short": data[:len(data)-1],
	} {
		t.Run(name, func(t *testing.T) {
			f, err := Decode(bad)
			if err == nil {
				t.Fatalf("Decode returned a frame with %d rows, want an error", len(f.Rows))
			}
			if f != nil {
				t.Error("Decode returned a partial frame along with its error")
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	data, _ := Encode(testFrame(3))
	f.Add(data)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data)
		if err == nil && fr.Header.Rows != len(fr.Rows) {
			t.Fatalf("header says %d rows, frame has %d", fr.Header.Rows, len(fr.Rows))
		}
	})
}

func TestMemoryStore(t *testing.T) {
	m := NewMemory()
	ctx := t.Context()
	if _, err := m.GetFrame(ctx, "prod", "pods", Verified); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty store: err = %v, want ErrNotFound", err)
	}
	in := testFrame(5)
	in.Header.Source = Verified
	if err := m.PutFrame(ctx, in); err != nil {
		t.Fatal(err)
	}
	out, err := m.GetFrame(ctx, "prod", "pods", Verified)
	if err != nil {
		t.Fatal(err)
	}
	if out.Header.Rows != 5 || out.Header.ResourceVersion != 4242 || len(out.Rows) != 5 {
		t.Errorf("got header %+v with %d rows", out.Header, len(out.Rows))
	}
	// A later put replaces the frame; other sources are untouched.
	in.Rows = in.Rows[:2]
	if err := m.PutFrame(ctx, in); err != nil {
		t.Fatal(err)
	}
	if out, _ := m.GetFrame(ctx, "prod", "pods", Verified); len(out.Rows) != 2 {
		t.Errorf("after replace: %d rows, want 2", len(out.Rows))
	}
	if _, err := m.GetFrame(ctx, "prod", "pods", Aggregated); !errors.Is(err, ErrNotFound) {
		t.Errorf("aggregated frame: err = %v, want ErrNotFound", err)
	}
}

func TestParseResourceVersion(t *testing.T) {
	if v, err := ParseResourceVersion("12345"); err != nil || v != 12345 {
		t.Errorf("ParseResourceVersion(12345) = %d, %v", v, err)
	}
	for _, bad := range []string{"", "abc", "-1", "1.5"} {
		if _, err := ParseResourceVersion(bad); err == nil {
			t.Errorf("ParseResourceVersion(%q) succeeded, want an error", bad)
		}
	}
}

func TestCompareKeysMatchesKeyOrder(t *testing.T) {
	names := []struct{ ns, name string }{
		{"a", "x"}, {"a", "y"}, {"a-b", "x"}, {"a0", "x"}, {"ab", "a"}, {"a.b", "z"}, {"b", "a"},
		{"kube-system", "p"}, {"kube", "q"}, {"kube0", "r"},
	}
	for _, x := range names {
		for _, y := range names {
			a := &Row{Namespace: x.ns, Name: x.name}
			b := &Row{Namespace: y.ns, Name: y.name}
			if got, want := CompareKeys(a, b), strings.Compare(a.Key(), b.Key()); got != want {
				t.Errorf("CompareKeys(%s, %s) = %d, want %d", a.Key(), b.Key(), got, want)
			}
		}
	}
	for _, pair := range [][2]string{{"a", "b"}, {"node-1", "node-10"}, {"x", "x"}} {
		a, b := &Row{Name: pair[0]}, &Row{Name: pair[1]}
		if got, want := CompareKeys(a, b), strings.Compare(pair[0], pair[1]); got != want {
			t.Errorf("cluster-scoped CompareKeys(%s, %s) = %d, want %d", pair[0], pair[1], got, want)
		}
	}
}

func TestMemoryStoreFrames(t *testing.T) {
	m := NewMemory()
	ctx := t.Context()
	if _, _, err := m.GetFrames(ctx, "prod", "pods"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty store: err = %v, want ErrNotFound", err)
	}
	v, a := testFrame(5), testFrame(3)
	v.Header.Source, a.Header.Source = Verified, Aggregated
	if err := m.PutFrames(ctx, v, a); err != nil {
		t.Fatal(err)
	}
	gv, ga, err := m.GetFrames(ctx, "prod", "pods")
	if err != nil || len(gv.Rows) != 5 || len(ga.Rows) != 3 {
		t.Fatalf("GetFrames = %v, %v, %v; want 5 verified and 3 aggregated rows", gv, ga, err)
	}
}
