package history

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// A patch turns one revision's object into another's. It is a JSON array of
// operations, each [path] (remove the field) or [path, value] (set it),
// where path is an array of object keys (strings) and array indexes
// (numbers). Arrays are patched by index only when both sides have the same
// length; otherwise the whole array is one operation. Objects are the agent's
// row bytes, which encoding/json writes with sorted keys, so applying a patch
// and encoding again gives back the other revision's bytes exactly.
type op struct {
	path  []any // string keys and int indexes
	value any
	set   bool
}

// decode reads a JSON object keeping numbers as written.
func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// diff returns the operations that turn to into from: applying them to to
// gives from. The same paths are the fields that changed from from to to.
func diff(from, to any) []op {
	var ops []op
	walk(nil, from, to, &ops)
	return ops
}

func walk(path []any, from, to any, ops *[]op) {
	switch f := from.(type) {
	case map[string]any:
		t, ok := to.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(f)+len(t))
		for k := range f {
			keys = append(keys, k)
		}
		for k := range t {
			if _, dup := f[k]; !dup {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := append(path[:len(path):len(path)], k)
			fv, inFrom := f[k]
			tv, inTo := t[k]
			switch {
			case !inTo:
				*ops = append(*ops, op{path: p, value: fv, set: true})
			case !inFrom:
				*ops = append(*ops, op{path: p})
			default:
				walk(p, fv, tv, ops)
			}
		}
		return
	case []any:
		t, ok := to.([]any)
		if !ok || len(t) != len(f) {
			break
		}
		for i := range f {
			walk(append(path[:len(path):len(path)], i), f[i], t[i], ops)
		}
		return
	default:
		if equalScalar(from, to) {
			return
		}
	}
	*ops = append(*ops, op{path: path, value: from, set: true})
}

func equalScalar(a, b any) bool {
	switch a.(type) {
	case map[string]any, []any:
		return false
	}
	switch b.(type) {
	case map[string]any, []any:
		return false
	}
	return a == b
}

// encodePatch writes ops as a patch.
func encodePatch(ops []op) ([]byte, error) {
	wire := make([][]any, len(ops))
	for i, o := range ops {
		if o.set {
			wire[i] = []any{o.path, o.value}
		} else {
			wire[i] = []any{o.path}
		}
	}
	return json.Marshal(wire)
}

// applyPatch applies a patch to the object doc (as decode returns it) and
// returns the result; doc may be changed in place.
func applyPatch(doc any, patch []byte) (any, error) {
	raw, err := decode(patch)
	if err != nil {
		return nil, fmt.Errorf("decoding a patch: %w", err)
	}
	ops, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("a patch is not an array")
	}
	for _, o := range ops {
		parts, ok := o.([]any)
		if !ok || len(parts) < 1 || len(parts) > 2 {
			return nil, fmt.Errorf("a patch operation is not [path] or [path, value]")
		}
		path, ok := parts[0].([]any)
		if !ok {
			return nil, fmt.Errorf("a patch operation's path is not an array")
		}
		var value any
		if len(parts) == 2 {
			value = parts[1]
		}
		if doc, err = applyOp(doc, path, value, len(parts) == 2); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

func applyOp(doc any, path []any, value any, set bool) (any, error) {
	if len(path) == 0 {
		if !set {
			return nil, fmt.Errorf("a patch removes the whole object")
		}
		return value, nil
	}
	switch d := doc.(type) {
	case map[string]any:
		k, ok := path[0].(string)
		if !ok {
			return nil, fmt.Errorf("a patch indexes an object with %v", path[0])
		}
		if len(path) == 1 {
			if set {
				d[k] = value
			} else {
				delete(d, k)
			}
			return d, nil
		}
		child, ok := d[k]
		if !ok {
			return nil, fmt.Errorf("a patch reaches into the missing field %q", k)
		}
		v, err := applyOp(child, path[1:], value, set)
		if err != nil {
			return nil, err
		}
		d[k] = v
		return d, nil
	case []any:
		n, ok := path[0].(json.Number)
		if !ok {
			return nil, fmt.Errorf("a patch indexes an array with %v", path[0])
		}
		i, err := strconv.Atoi(string(n))
		if err != nil || i < 0 || i >= len(d) {
			return nil, fmt.Errorf("a patch indexes an array of %d with %v", len(d), n)
		}
		if len(path) == 1 && !set {
			return nil, fmt.Errorf("a patch removes an array element")
		}
		v, err := applyOp(d[i], path[1:], value, set)
		if err != nil {
			return nil, err
		}
		d[i] = v
		return d, nil
	}
	return nil, fmt.Errorf("a patch reaches into a %T", doc)
}

// fieldPath renders a path as kubectl users write field paths:
// spec.replicas, spec.containers[0].image, and metadata.labels['app.kubernetes.io/name']
// for a key that holds a dot.
func fieldPath(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch v := p.(type) {
		case string:
			if strings.ContainsAny(v, ".[]'") {
				b.WriteString("['")
				b.WriteString(v)
				b.WriteString("']")
				continue
			}
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(v)
		case int:
			b.WriteString("[" + strconv.Itoa(v) + "]")
		case json.Number:
			b.WriteString("[" + string(v) + "]")
		}
	}
	return b.String()
}

// ignoredPaths change with every revision and say nothing about what
// changed: they are patched but not listed.
var ignoredPaths = map[string]bool{"metadata.resourceVersion": true}

// changedPaths lists ops' fields, in order, without ignoredPaths.
func changedPaths(ops []op) []string {
	var out []string
	for _, o := range ops {
		if p := fieldPath(o.path); !ignoredPaths[p] {
			out = append(out, p)
		}
	}
	return out
}

// Diff compares two revisions' objects: it returns the patch that turns
// newer back into older, and the field paths that changed.
func Diff(older, newer []byte) (back []byte, changed []string, err error) {
	o, err := decode(older)
	if err != nil {
		return nil, nil, fmt.Errorf("decoding the older revision: %w", err)
	}
	n, err := decode(newer)
	if err != nil {
		return nil, nil, fmt.Errorf("decoding the newer revision: %w", err)
	}
	ops := diff(o, n)
	back, err = encodePatch(ops)
	if err != nil {
		return nil, nil, err
	}
	return back, changedPaths(ops), nil
}

// Apply applies a patch from Diff to newer and returns older's bytes.
func Apply(newer, back []byte) ([]byte, error) {
	n, err := decode(newer)
	if err != nil {
		return nil, fmt.Errorf("decoding an object: %w", err)
	}
	o, err := applyPatch(n, back)
	if err != nil {
		return nil, err
	}
	return json.Marshal(o)
}
