package server

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/krm-project/krm/pkg/client"
)

// TestGoClient reads the server with krm's own Go client.
func TestGoClient(t *testing.T) {
	ts, res, _ := startServer(t)
	c, err := client.New(ts.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	list, err := client.ListAs[corev1.Pod](ctx, c, podsInfo, client.ListOptions{Namespace: "dev", LabelSelector: "app=api"})
	if err != nil {
		t.Fatal(err)
	}
	if got := podNames(list.Items); got != "dev/api-1,dev/api-2" || list.Kind != "PodList" || list.ResourceVersion != "110" {
		t.Errorf("list = %s %s %s", list.Kind, list.ResourceVersion, got)
	}
	if !list.Freshness.VerifiedAt.Equal(testNow.Add(-10*time.Second)) || list.Freshness.ResourceVersion != "110" {
		t.Errorf("freshness = %+v", list.Freshness)
	}
	pod, err := client.GetAs[corev1.Pod](ctx, c, podsInfo, "dev", "web-1", client.GetOptions{})
	if err != nil || pod.Object.Spec.NodeName != "n1" {
		t.Errorf("get = %+v, %v", pod, err)
	}
	if _, err := c.Get(ctx, podsInfo, "dev", "missing", client.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get missing = %v, want NotFound", err)
	}

	events, _, err := c.Watch(ctx, podsInfo, client.ListOptions{Namespace: "dev", ResourceVersion: "110"})
	if err != nil {
		t.Fatal(err)
	}
	res.apply(eventAdded, podRow(t, podSpec{"dev", "web-9", "n1", "Running", nil, 111}))
	select {
	case ev := <-events:
		if ev.Type != "ADDED" {
			t.Errorf("event = %s %s", ev.Type, ev.Object)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}

	st, err := c.AgentStatus(ctx)
	if err != nil || st.Status.Cluster != "test" || st.Name != "agent" {
		t.Errorf("agent status = %+v, %v", st, err)
	}
	rs, err := c.ResourceStatuses(ctx)
	if err != nil || len(rs.Items) != 2 || rs.Items[0].Name != "pods" {
		t.Errorf("resource statuses = %+v, %v", rs, err)
	}
	if _, err := c.DriftReport(ctx, "configmaps"); !apierrors.IsNotFound(err) {
		t.Errorf("drift report of an uncached resource = %v, want NotFound", err)
	}
}

func TestFreshnessSource(t *testing.T) {
	f := client.Freshness{VerifiedResourceVersion: "100"}
	for rv, want := range map[string]string{"99": "verified", "100": "verified", "101": "streamed", "": "streamed"} {
		if got := f.Source(rv); got != want {
			t.Errorf("Source(%q) = %s, want %s", rv, got, want)
		}
	}
}
