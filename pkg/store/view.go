package store

import (
	"strings"

	"github.com/google/btree"
)

// viewDegree is the B-tree's degree: nodes of up to 2*32-1 rows, so a view
// of 100,000 rows is four levels deep and a change copies at most four
// small nodes when a snapshot shares them.
const viewDegree = 32

// lessRow orders rows as kube-apiserver lists them, by namespace/name; two
// rows with one key (an object deleted and created again under its name,
// both held until a LIST settles which is live) are ordered by UID.
func lessRow(a, b *Row) bool {
	if c := CompareKeys(a, b); c != 0 {
		return c < 0
	}
	return a.UID < b.UID
}

// Rows is a mutable set of rows kept in key order, for the views the
// aggregator changes one event at a time: inserting, replacing or deleting
// a row is O(log n), and View takes an immutable copy in O(1), sharing
// structure until either side changes. Rows is not safe for concurrent
// use; the Views it returns are.
type Rows struct {
	t *btree.BTreeG[*Row]
	// snap is the View of the current contents, nil after a change.
	snap *View
}

// NewRows returns an empty set.
func NewRows() *Rows {
	return &Rows{t: btree.NewG(viewDegree, lessRow)}
}

// Set inserts r, replacing the row with the same key and UID.
func (s *Rows) Set(r *Row) {
	s.t.ReplaceOrInsert(r)
	s.snap = nil
}

// Delete removes the row with r's key and UID, if any.
func (s *Rows) Delete(r *Row) {
	if _, ok := s.t.Delete(r); ok {
		s.snap = nil
	}
}

// Len is the number of rows.
func (s *Rows) Len() int { return s.t.Len() }

// View returns the current contents as an immutable View. Until the set
// changes, every call returns the same View.
func (s *Rows) View() *View {
	if s.snap == nil {
		s.snap = &View{t: s.t.Clone()}
	}
	return s.snap
}

// View is an immutable, sorted set of rows: what a snapshot of a view
// holds. Reads are safe from any number of goroutines.
type View struct {
	t *btree.BTreeG[*Row]
}

// NewView returns a View of rows, in any order.
func NewView(rows ...*Row) *View {
	s := NewRows()
	for _, r := range rows {
		s.Set(r)
	}
	return s.View()
}

// Len is the number of rows; 0 for a nil View.
func (v *View) Len() int {
	if v == nil {
		return 0
	}
	return v.t.Len()
}

// Ascend calls fn for each row in key order until fn returns false.
func (v *View) Ascend(fn func(*Row) bool) {
	if v == nil {
		return
	}
	v.t.Ascend(fn)
}

// AscendAfter calls fn, in key order, for each row whose Key() sorts after
// key ("" is before every row), until fn returns false.
func (v *View) AscendAfter(key string, fn func(*Row) bool) {
	if v == nil {
		return
	}
	if key == "" {
		v.t.Ascend(fn)
		return
	}
	v.t.AscendGreaterOrEqual(pivot(key), func(r *Row) bool {
		if r.Key() == key {
			return true
		}
		return fn(r)
	})
}

// AscendNamespace calls fn, in key order, for each row of namespace ns
// after key (a key in ns, or "" for all of them), until fn returns false.
func (v *View) AscendNamespace(ns, after string, fn func(*Row) bool) {
	if v == nil {
		return
	}
	start := &Row{Namespace: ns}
	if after != "" {
		p := pivot(after)
		switch {
		case p.Namespace == ns:
			start = p
		case lessRow(p, start):
			after = "" // a key before the namespace: all of it
		default:
			return // a key after the namespace: none of it
		}
	}
	v.t.AscendGreaterOrEqual(start, func(r *Row) bool {
		if r.Namespace != ns {
			return false
		}
		if after != "" && r.Key() == after {
			return true
		}
		return fn(r)
	})
}

// Get returns the row of namespace/name, or nil. With two rows under one
// key (see lessRow), it returns the first by UID.
func (v *View) Get(namespace, name string) *Row {
	if v == nil {
		return nil
	}
	var found *Row
	v.t.AscendGreaterOrEqual(&Row{Namespace: namespace, Name: name}, func(r *Row) bool {
		if r.Namespace == namespace && r.Name == name {
			found = r
		}
		return false
	})
	return found
}

// Slice returns the rows in key order, in a new slice.
func (v *View) Slice() []*Row {
	out := make([]*Row, 0, v.Len())
	v.Ascend(func(r *Row) bool {
		out = append(out, r)
		return true
	})
	return out
}

// pivot is a row that sorts just before every row whose Key() is key.
func pivot(key string) *Row {
	if ns, name, ok := strings.Cut(key, "/"); ok {
		return &Row{Namespace: ns, Name: name}
	}
	return &Row{Name: key}
}

// Clone returns a copy of the set that shares structure with it until
// either changes, in O(1).
func (s *Rows) Clone() *Rows {
	return &Rows{t: s.t.Clone()}
}
