package history

import (
	"sync"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// Managers reads the field managers and their operations from an object's
// metadata.managedFields (as a decoded JSON object), before the agent
// strips them. Names and operations are interned: a handful of managers
// make nearly every revision.
func Managers(obj map[string]any, in *Interner) []krmv1alpha1.ManagerEntry {
	meta, _ := obj["metadata"].(map[string]any)
	fields, _ := meta["managedFields"].([]any)
	if len(fields) == 0 {
		return nil
	}
	out := make([]krmv1alpha1.ManagerEntry, 0, len(fields))
	for _, f := range fields {
		m, _ := f.(map[string]any)
		name, _ := m["manager"].(string)
		op, _ := m["operation"].(string)
		t, _ := m["time"].(string)
		sub, _ := m["subresource"].(string)
		if sub != "" {
			op += " (" + sub + ")"
		}
		out = append(out, krmv1alpha1.ManagerEntry{Manager: in.intern(name), Operation: in.intern(op), Time: t})
	}
	return out
}

// Interner shares equal strings. Its zero value is ready; it is safe for
// concurrent use.
type Interner struct {
	mu sync.Mutex
	m  map[string]string
}

// internLimit bounds the interned strings; past it strings are kept as
// they come.
const internLimit = 4096

func (in *Interner) intern(s string) string {
	if in == nil {
		return s
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if v, ok := in.m[s]; ok {
		return v
	}
	if in.m == nil {
		in.m = map[string]string{}
	}
	if len(in.m) < internLimit {
		in.m[s] = s
	}
	return s
}
