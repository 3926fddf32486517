package store

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
)

func keysOf(rows []*Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Key()
	}
	return out
}

// viewRows are rows whose keys trip a naive order: "a-b/…" sorts before
// "a/…" ('-' < '/'), "a" before "a0", cluster-scoped names among them.
func viewRows() []*Row {
	var rows []*Row
	for i, k := range [][2]string{
		{"a", "x"}, {"a", "y"}, {"a-b", "x"}, {"a0", "x"}, {"b", "a"}, {"a", "a"},
		{"", "a"}, {"", "zz"}, {"ab", "c"}, {"a", "x-1"},
	} {
		rows = append(rows, &Row{UID: fmt.Sprint("u", i), Namespace: k[0], Name: k[1]})
	}
	return rows
}

func TestViewOrdersAsKeys(t *testing.T) {
	rows := viewRows()
	v := NewView(rows...)
	want := keysOf(rows)
	sort.Strings(want)
	if got := keysOf(v.Slice()); !slices.Equal(got, want) {
		t.Fatalf("order\n%v\nwant\n%v", got, want)
	}
	if v.Len() != len(rows) {
		t.Fatalf("Len %d, want %d", v.Len(), len(rows))
	}
	for _, after := range append(want, "", "a/b", "zzz", "0") {
		var got []string
		v.AscendAfter(after, func(r *Row) bool { got = append(got, r.Key()); return true })
		var exp []string
		for _, k := range want {
			if k > after {
				exp = append(exp, k)
			}
		}
		if !slices.Equal(got, exp) {
			t.Errorf("after %q: %v, want %v", after, got, exp)
		}
	}
}

func TestViewNamespace(t *testing.T) {
	v := NewView(viewRows()...)
	for _, c := range []struct {
		ns, after string
		want      []string
	}{
		{"a", "", []string{"a/a", "a/x", "a/x-1", "a/y"}},
		{"a", "a/x", []string{"a/x-1", "a/y"}},
		{"a", "a/y", nil},
		{"a", "a-b/x", []string{"a/a", "a/x", "a/x-1", "a/y"}}, // a key before the namespace
		{"a", "b/a", nil},                                      // a key after it
		{"a-b", "", []string{"a-b/x"}},
		{"nope", "", nil},
	} {
		var got []string
		v.AscendNamespace(c.ns, c.after, func(r *Row) bool { got = append(got, r.Key()); return true })
		if !slices.Equal(got, c.want) {
			t.Errorf("namespace %q after %q: %v, want %v", c.ns, c.after, got, c.want)
		}
	}
}

func TestViewGet(t *testing.T) {
	v := NewView(viewRows()...)
	if r := v.Get("a", "x"); r == nil || r.Key() != "a/x" {
		t.Errorf("Get a/x: %v", r)
	}
	if r := v.Get("", "zz"); r == nil || r.Key() != "zz" {
		t.Errorf("Get zz: %v", r)
	}
	for _, k := range [][2]string{{"a", "z"}, {"", "x"}, {"a", ""}, {"c", "a"}} {
		if r := v.Get(k[0], k[1]); r != nil {
			t.Errorf("Get %v: %v, want nil", k, r.Key())
		}
	}
	var nilView *View
	if nilView.Get("a", "x") != nil || nilView.Len() != 0 || len(nilView.Slice()) != 0 {
		t.Error("a nil View is not empty")
	}
}

// A View does not change when its set does, and two rows under one key
// (deleted and created again) are both held.
func TestViewIsASnapshot(t *testing.T) {
	s := NewRows()
	for _, r := range viewRows() {
		s.Set(r)
	}
	before := s.View()
	if s.View() != before {
		t.Error("an unchanged set gave a new View")
	}
	want := keysOf(before.Slice())
	again := &Row{UID: "other", Namespace: "a", Name: "x"}
	s.Set(again)
	s.Delete(&Row{UID: "u0", Namespace: "a", Name: "x"})
	s.Set(&Row{UID: "new", Namespace: "c", Name: "c"})
	if got := keysOf(before.Slice()); !slices.Equal(got, want) {
		t.Errorf("the earlier View changed: %v, want %v", got, want)
	}
	after := s.View()
	if after == before || after.Len() != before.Len()+1 {
		t.Errorf("the new View has %d rows, want %d", after.Len(), before.Len()+1)
	}
	if r := after.Get("a", "x"); r != again {
		t.Errorf("Get a/x after replacing: %+v", r)
	}
	s.Set(&Row{UID: "zzz", Namespace: "a", Name: "x"})
	n := 0
	s.View().AscendNamespace("a", "", func(r *Row) bool {
		if r.Name == "x" {
			n++
		}
		return true
	})
	if n != 2 {
		t.Errorf("%d rows under a/x, want 2 (two UIDs)", n)
	}
}

// Views are read while the set keeps changing (run with -race).
func TestViewConcurrentReads(t *testing.T) {
	s := NewRows()
	for i := range 2000 {
		s.Set(&Row{UID: fmt.Sprint(i), Namespace: fmt.Sprint("ns", i%7), Name: fmt.Sprint("o", i)})
	}
	var wg sync.WaitGroup
	views := make(chan *View, 64)
	for range 4 {
		wg.Go(func() {
			for v := range views {
				n := 0
				prev := ""
				v.Ascend(func(r *Row) bool {
					if k := r.Key(); k < prev {
						t.Errorf("out of order: %q after %q", k, prev)
					} else {
						prev = k
					}
					n++
					return true
				})
				if n != v.Len() {
					t.Errorf("walked %d rows of %d", n, v.Len())
				}
			}
		})
	}
	for i := range 5000 {
		j := rand.IntN(3000)
		r := &Row{UID: fmt.Sprint(j), Namespace: fmt.Sprint("ns", j%7), Name: fmt.Sprint("o", j)}
		if i%3 == 0 {
			s.Delete(r)
		} else {
			s.Set(r)
		}
		if i%50 == 0 {
			views <- s.View()
		}
	}
	close(views)
	wg.Wait()
}
