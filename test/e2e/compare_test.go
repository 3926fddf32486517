package e2e

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/krm-project/krm/pkg/client"
	"github.com/krm-project/krm/test/cluster"
)

// ref identifies one version of one object.
type ref struct {
	Namespace, Name, UID, ResourceVersion string
}

func refOf(u *unstructured.Unstructured) ref {
	return ref{u.GetNamespace(), u.GetName(), string(u.GetUID()), u.GetResourceVersion()}
}

// listing is one resource's objects as a source returned them.
type listing struct {
	refs []ref                     // sorted by namespace, name
	objs map[string]map[string]any // by uid
	// rv is the list's resourceVersion (the agent's only: kubectl prints
	// none).
	rv uint64
}

func newListing(items []*unstructured.Unstructured) listing {
	l := listing{objs: map[string]map[string]any{}}
	for _, u := range items {
		l.refs = append(l.refs, refOf(u))
		l.objs[string(u.GetUID())] = u.Object
	}
	sort.Slice(l.refs, func(i, j int) bool {
		a, b := l.refs[i], l.refs[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return l
}

func (l listing) count(namespace string) int {
	n := 0
	for _, r := range l.refs {
		if r.Namespace == namespace {
			n++
		}
	}
	return n
}

// kubectlListing lists resource in namespace ("": all namespaces) with the
// cluster's kubectl, without managedFields (which the agent never keeps).
func kubectlListing(ctx context.Context, c *cluster.State, resource, namespace string) (listing, error) {
	args := []string{"get", resource, "-o", "json", "--show-managed-fields", "--all-namespaces"}
	if namespace != "" {
		args[len(args)-1] = "--namespace=" + namespace
	}
	out, err := kubectl(ctx, c.Kubectl, c.Kubeconfig, args...)
	if err != nil {
		return listing{}, err
	}
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON(out); err != nil {
		return listing{}, fmt.Errorf("decoding kubectl get %s: %w", resource, err)
	}
	items := make([]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		items[i] = &list.Items[i]
		unstructured.RemoveNestedField(items[i].Object, "metadata", "managedFields")
	}
	return newListing(items), nil
}

// agentListing lists resource in namespace ("": all) from the agent.
func agentListing(ctx context.Context, c *client.Client, resource, namespace string) (listing, error) {
	info, err := c.Resource(ctx, resource)
	if err != nil {
		return listing{}, err
	}
	list, err := c.List(ctx, info, client.ListOptions{Namespace: namespace})
	if err != nil {
		return listing{}, err
	}
	items := make([]*unstructured.Unstructured, len(list.Items))
	for i, raw := range list.Items {
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return listing{}, fmt.Errorf("decoding item %d of the agent's %s: %w", i, resource, err)
		}
		items[i] = u
	}
	l := newListing(items)
	if l.rv, err = strconv.ParseUint(list.ResourceVersion, 10, 64); err != nil {
		return listing{}, fmt.Errorf("the agent's %s: list resourceVersion %q: %w", resource, list.ResourceVersion, err)
	}
	return l, nil
}

// requireSameObjects requires every object both listings hold at the same
// resourceVersion to be identical.
func requireSameObjects(t *testing.T, resource string, want, got listing) {
	t.Helper()
	for _, r := range want.refs {
		g, ok := got.objs[r.UID]
		if !ok || g["metadata"].(map[string]any)["resourceVersion"] != r.ResourceVersion {
			continue
		}
		if diff := cmp.Diff(want.objs[r.UID], g); diff != "" {
			t.Errorf("%s %s/%s at resourceVersion %s: the agent's object differs from kubectl's without managedFields (-kubectl +agent):\n%s",
				resource, r.Namespace, r.Name, r.ResourceVersion, diff)
		}
	}
}

// requireSameAsKubectl waits until the agent's list of resource in
// namespace ("": all) has the same objects at the same resourceVersions as
// kubectl's, then requires every object to equal kubectl's without
// managedFields. The two are snapshots taken one after the other, so it
// retries for up to 20s.
//
// Across all namespaces, tests sharing the cluster may never leave 20s quiet
// enough for two snapshots to agree. Then it checks what two snapshots taken
// in turn can show: every object kubectl lists at or below the agent's list
// resourceVersion (so unchanged since the agent's snapshot) must be in the
// agent's list, identical. Objects of the test's own namespace still get the
// exact check, with namespace set.
func requireSameAsKubectl(t *testing.T, c *cluster.State, client *client.Client, resource, namespace string) listing {
	t.Helper()
	ctx := t.Context()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err := agentListing(ctx, client, resource, namespace)
		if err != nil {
			t.Fatal(err)
		}
		want, err := kubectlListing(ctx, c, resource, namespace)
		if err != nil {
			t.Fatal(err)
		}
		diff := cmp.Diff(want.refs, got.refs)
		if diff == "" {
			requireSameObjects(t, resource, want, got)
			return got
		}
		if time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if namespace != "" {
			t.Fatalf("%s in %s: the agent's list never matched kubectl's within 20s; last difference (-kubectl +agent):\n%s", resource, namespace, diff)
		}
		var missed []string
		gotRV := map[string]string{}
		for _, r := range got.refs {
			gotRV[r.UID] = r.ResourceVersion
		}
		for _, r := range want.refs {
			rv, err := strconv.ParseUint(r.ResourceVersion, 10, 64)
			if err != nil {
				t.Fatalf("kubectl's %s %s/%s: resourceVersion %q: %v", resource, r.Namespace, r.Name, r.ResourceVersion, err)
			}
			if rv <= got.rv && gotRV[r.UID] != r.ResourceVersion {
				missed = append(missed, fmt.Sprintf("%s/%s: kubectl has resourceVersion %s, the agent %q", r.Namespace, r.Name, r.ResourceVersion, gotRV[r.UID]))
			}
		}
		if len(missed) > 0 {
			t.Fatalf("%s: objects unchanged since the agent's list (resourceVersion %d) differ from kubectl's:\n%v\nwhole difference (-kubectl +agent):\n%s", resource, got.rv, missed, diff)
		}
		requireSameObjects(t, resource, want, got)
		t.Logf("%s: the cluster kept changing for 20s; checked the agent's list at resourceVersion %d against kubectl's later one instead", resource, got.rv)
		return got
	}
}

// requireSamePod waits until the agent's single-object read of a pod is at
// kubectl's resourceVersion, then requires the two to be equal without
// managedFields.
func requireSamePod(t *testing.T, c *cluster.State, ac *client.Client, ns, name string) {
	t.Helper()
	ctx := t.Context()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := kubectl(ctx, c.Kubectl, c.Kubeconfig, "get", "pod", name, "-n", ns, "-o", "json", "--show-managed-fields")
		if err != nil {
			t.Fatal(err)
		}
		want := &unstructured.Unstructured{}
		if err := want.UnmarshalJSON(out); err != nil {
			t.Fatalf("decoding kubectl get pod %s: %v", name, err)
		}
		pods, err := ac.Resource(ctx, "pods")
		if err != nil {
			t.Fatal(err)
		}
		obj, err := ac.Get(ctx, pods, ns, name, client.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := &unstructured.Unstructured{}
		if err := got.UnmarshalJSON(obj.Object); err != nil {
			t.Fatalf("decoding the agent's pod %s: %v", name, err)
		}
		if got.GetResourceVersion() == want.GetResourceVersion() {
			if len(want.GetManagedFields()) == 0 {
				t.Errorf("pod %s: kubectl --show-managed-fields shows no managedFields, so this check proves nothing about removing them", name)
			}
			unstructured.RemoveNestedField(want.Object, "metadata", "managedFields")
			if diff := cmp.Diff(want.Object, got.Object); diff != "" {
				t.Errorf("pod %s: the agent's object differs from kubectl's without managedFields (-kubectl +agent):\n%s", name, diff)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod %s: the agent has resourceVersion %s, kubectl %s, after 20s", name, got.GetResourceVersion(), want.GetResourceVersion())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
