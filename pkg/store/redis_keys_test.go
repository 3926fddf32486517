package store_test

import (
	"strings"
	"testing"

	"github.com/krm-project/krm/pkg/store"
)

// hashTag is the part of key Redis Cluster hashes to pick the slot: the
// text between the first '{' and the next '}', when not empty.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

// TestKeysShareASlotPerResource: every key of one resource hashes alike, so
// the swap script may touch them together on a Redis Cluster, and keys of
// different resources or clusters spread over slots.
func TestKeysShareASlotPerResource(t *testing.T) {
	for _, cluster := range []string{"prod", "", "a/b", "odd}name", "x{y"} {
		keys := []string{
			store.HeadKey(cluster, "pods", store.Verified),
			store.HeadKey(cluster, "pods", store.Aggregated),
			store.HeadKey(cluster, "pods", store.Verified) + ":1764450000000-0011223344556677",
			store.EventsKey(cluster, "pods"),
		}
		tag := hashTag(keys[0])
		for _, k := range keys {
			if !strings.HasPrefix(k, "krm:{") {
				t.Errorf("key %q is not under krm:{", k)
			}
			if got := hashTag(k); got != tag {
				t.Errorf("cluster %q: key %q hashes on %q, key %q on %q", cluster, k, got, keys[0], tag)
			}
		}
	}
	if hashTag(store.HeadKey("prod", "pods", store.Verified)) == hashTag(store.HeadKey("prod", "nodes", store.Verified)) {
		t.Error("pods and nodes of one cluster share a hash tag")
	}
	if hashTag(store.EventsKey("prod", "pods")) == hashTag(store.EventsKey("staging", "pods")) {
		t.Error("the pods of two clusters share a hash tag")
	}
	if got, want := store.HeadKey("prod", "pods", store.Verified), "krm:{prod/pods}:verified"; got != want {
		t.Errorf("HeadKey = %q, want %q", got, want)
	}
}

// TestKeysFollowTheClusterUID: a frame whose header knows the cluster's UID
// is stored under it, not under the name, so a rebuilt cluster that keeps
// the name (the default "in-cluster") never finds the old cluster's frames,
// and a renamed one keeps its own.
func TestKeysFollowTheClusterUID(t *testing.T) {
	named := store.Header{Cluster: "in-cluster"}
	if got := named.KeyCluster(); got != "in-cluster" {
		t.Errorf("KeyCluster without a UID = %q, want the name", got)
	}
	a := store.Header{Cluster: "in-cluster", ClusterUID: "6f1c3a52-0000-4000-8000-000000000001"}
	b := store.Header{Cluster: "in-cluster", ClusterUID: "6f1c3a52-0000-4000-8000-000000000002"}
	if a.KeyCluster() == b.KeyCluster() {
		t.Errorf("two clusters of one name share the key cluster %q", a.KeyCluster())
	}
	renamed := a
	renamed.Cluster = "prod"
	if renamed.KeyCluster() != a.KeyCluster() {
		t.Errorf("renaming the cluster moved its keys from %q to %q", a.KeyCluster(), renamed.KeyCluster())
	}
}
