// Package store keeps krm's frames: the state of one resource from one source
// at one point. Frames are gob-encoded with a version field; the Store
// interface persists them (in memory by default, Redis in production) so an
// agent can restart warm.
package store

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Source says where a frame or a row comes from.
type Source string

const (
	// Streamed rows come from the watch: newest, but it may miss events.
	Streamed Source = "streamed"
	// Verified rows come from the last full LIST: complete as of VerifiedAt.
	Verified Source = "verified"
	// Aggregated is the verified frame with newer streamed events applied.
	Aggregated Source = "aggregated"
)

// ParseSource parses a view name; the empty string is Aggregated.
func ParseSource(s string) (Source, error) {
	switch Source(s) {
	case "", Aggregated:
		return Aggregated, nil
	case Verified, Streamed:
		return Source(s), nil
	}
	return "", fmt.Errorf("unknown view %q: use aggregated, verified or streamed", s)
}

// FrameVersion is the version of the encoding written by Encode. Decode
// rejects any other, so an old or foreign frame is rebuilt, never misread.
const FrameVersion = 1

// Header describes a frame.
type Header struct {
	Version int
	// Cluster is the cluster's name, for people; ClusterUID is the UID of
	// its kube-system namespace, which survives renames and differs in a
	// rebuilt cluster. "" when the agent could not read it (and in frames
	// written before the field existed).
	Cluster         string
	ClusterUID      string
	Resource        string
	Source          Source
	ResourceVersion uint64
	VerifiedAt      time.Time
	Rows            int
}

// KeyCluster is the cluster part of the frame's store keys: its UID when
// known, so that a renamed cluster keeps its frames and a rebuilt one (new
// UID, perhaps the same name, such as the default "in-cluster") never
// reads another's; else its name.
func (h *Header) KeyCluster() string {
	if h.ClusterUID != "" {
		return h.ClusterUID
	}
	return h.Cluster
}

// Row is one object. Object holds its JSON with managedFields stripped; rows
// of different views share the same bytes, so a Row is never mutated once
// built: a change makes a new Row.
type Row struct {
	UID             string
	Namespace       string
	Name            string
	ResourceVersion uint64
	Source          Source
	ObservedAt      time.Time
	// Deleted marks a tombstone: the object was deleted since the last
	// LIST. Tombstones are shown and diffed, never served as live objects.
	Deleted bool
	Object  []byte
	// Labels and Fields are what selectors match on, extracted once when
	// the row is built.
	Labels map[string]string
	Fields map[string]string
	// Cells are the object's Table row cells as kube-apiserver sent them
	// (a JSON array), for kinds whose Table the agent asks kube-apiserver
	// for; nil otherwise, and in frames written before the field existed.
	Cells []byte
}

// Key is the row's sort key, namespace/name, the order kube-apiserver lists in.
func (r *Row) Key() string { return Key(r.Namespace, r.Name) }

// Key is namespace/name, or name for a cluster-scoped object: the order of
// rows in a view.
func Key(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// Frame is a header and its rows.
type Frame struct {
	Header Header
	Rows   []*Row
}

// ParseResourceVersion parses a Kubernetes resourceVersion, which krm
// compares as an integer (an etcd revision). Anything else is an error.
func ParseResourceVersion(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("resourceVersion %q is not an integer: %w", s, err)
	}
	return v, nil
}

// FormatResourceVersion is the inverse of ParseResourceVersion; 0 is "".
func FormatResourceVersion(v uint64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatUint(v, 10)
}

// CompareKeys orders rows as their Key() strings would (kube-apiserver's
// order), without building them: sorting a large view must not allocate per
// comparison.
func CompareKeys(a, b *Row) int {
	if a.Namespace == b.Namespace {
		return strings.Compare(a.Name, b.Name)
	}
	if a.Namespace == "" || b.Namespace == "" {
		return strings.Compare(a.Key(), b.Key())
	}
	short, long, sign := a.Namespace, b.Namespace, 1
	if len(short) > len(long) {
		short, long, sign = long, short, -1
	}
	if strings.HasPrefix(long, short) {
		// "short/…" against "short<c>…": '/' decides against c.
		if '/' < long[len(short)] {
			return -sign
		}
		return sign
	}
	return strings.Compare(a.Namespace, b.Namespace)
}
