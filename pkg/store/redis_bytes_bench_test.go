package store_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/krm-project/krm/pkg/store"
)

// realisticPod is a Deployment's pod as kube-apiserver serves it with
// managedFields stripped: owner reference, two containers with env,
// resources, probes and mounts, a projected token volume, tolerations and
// the status of a running pod. About 4 KiB of compact JSON.
const realisticPod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web-7d9f8b6c5d-%[1]05d","generateName":"web-7d9f8b6c5d-","namespace":"shop","uid":"0b6f6e1c-%[1]08d-4a7e-9d1e-3f0c2a7b9e10","resourceVersion":"%[2]d","creationTimestamp":"2026-11-29T12:00:00Z","labels":{"app.kubernetes.io/name":"web","app.kubernetes.io/part-of":"shop","pod-template-hash":"7d9f8b6c5d","version":"v1.14.2"},"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-28T09:15:00Z","prometheus.io/scrape":"true","prometheus.io/port":"9090"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d9f8b6c5d","uid":"5c2e9a41-1b7d-4f0e-8a63-9e2d7c4b1a05","controller":true,"blockOwnerDeletion":true}]},"spec":{"volumes":[{"name":"config","configMap":{"name":"web-config","defaultMode":420}},{"name":"kube-api-access-x7k2p","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}},{"downwardAPI":{"items":[{"path":"namespace","fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}]}}],"defaultMode":420}}],"containers":[{"name":"web","image":"registry.example/shop/web:v1.14.2","ports":[{"name":"http","containerPort":8080,"protocol":"TCP"},{"name":"metrics","containerPort":9090,"protocol":"TCP"}],"env":[{"name":"POD_NAME","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}},{"name":"LOG_LEVEL","value":"info"},{"name":"DATABASE_URL","valueFrom":{"secretKeyRef":{"name":"web-db","key":"url"}}}],"resources":{"limits":{"memory":"512Mi"},"requests":{"cpu":"250m","memory":"256Mi"}},"volumeMounts":[{"name":"config","readOnly":true,"mountPath":"/etc/web"},{"name":"kube-api-access-x7k2p","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],"livenessProbe":{"httpGet":{"path":"/healthz","port":"http","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3},"readinessProbe":{"httpGet":{"path":"/readyz","port":"http","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":5,"successThreshold":1,"failureThreshold":3},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent","securityContext":{"allowPrivilegeEscalation":false,"readOnlyRootFilesystem":true,"runAsNonRoot":true,"capabilities":{"drop":["ALL"]}}},{"name":"proxy","image":"registry.example/infra/envoy:v1.31.0","args":["--config-path","/etc/envoy/envoy.yaml"],"ports":[{"name":"proxy","containerPort":15001,"protocol":"TCP"}],"resources":{"limits":{"memory":"128Mi"},"requests":{"cpu":"50m","memory":"64Mi"}},"volumeMounts":[{"name":"kube-api-access-x7k2p","readOnly":true,"mountPath":"/var/run/secrets/kubernetes.io/serviceaccount"}],"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"IfNotPresent"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"web","serviceAccount":"web","nodeName":"node-%[3]d","securityContext":{"runAsUser":1000,"fsGroup":1000,"seccompProfile":{"type":"RuntimeDefault"}},"schedulerName":"default-scheduler","tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300},{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}],"priority":0,"enableServiceLinks":true,"preemptionPolicy":"PreemptLowerPriority"},"status":{"phase":"Running","conditions":[{"type":"PodReadyToStartContainers","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-29T12:00:03Z"},{"type":"Initialized","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-29T12:00:00Z"},{"type":"Ready","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-29T12:00:09Z"},{"type":"ContainersReady","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-29T12:00:09Z"},{"type":"PodScheduled","status":"True","lastProbeTime":null,"lastTransitionTime":"2026-11-29T12:00:00Z"}],"hostIP":"10.0.%[3]d.10","hostIPs":[{"ip":"10.0.%[3]d.10"}],"podIP":"10.244.%[3]d.%[4]d","podIPs":[{"ip":"10.244.%[3]d.%[4]d"}],"startTime":"2026-11-29T12:00:00Z","containerStatuses":[{"name":"proxy","state":{"running":{"startedAt":"2026-11-29T12:00:04Z"}},"lastState":{},"ready":true,"restartCount":0,"image":"registry.example/infra/envoy:v1.31.0","imageID":"registry.example/infra/envoy@sha256:9f2c4e1d7b3a5c8e0f6d2b4a7c9e1f3d5b7a9c0e2f4d6b8a1c3e5f7d9b0a2c4e","containerID":"containerd://4e1d7b3a5c8e0f6d2b4a7c9e1f3d5b7a9c0e2f4d6b8a1c3e5f7d9b0a2c4e9f2c","started":true},{"name":"web","state":{"running":{"startedAt":"2026-11-29T12:00:03Z"}},"lastState":{},"ready":true,"restartCount":0,"image":"registry.example/shop/web:v1.14.2","imageID":"registry.example/shop/web@sha256:1a3c5e7f9b0d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8a0c2e4b6d8f0a","containerID":"containerd://7f9b0d2f4a6c8e0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8a0c2e4b6d8f0a1a3c5e","started":true}],"qosClass":"Burstable"}}`

// realisticPods is n realistic pods as a frame's rows, each with the labels
// and fields the agent extracts for selectors.
func realisticPods(cluster string, source store.Source, n int) *store.Frame {
	f := &store.Frame{Header: store.Header{Cluster: cluster, Resource: "pods", Source: source, ResourceVersion: uint64(n), VerifiedAt: time.Now()}}
	f.Rows = make([]*store.Row, n)
	for i := range n {
		obj := fmt.Appendf(nil, realisticPod, i, 100000+i, i%3, i%250)
		var compact bytes.Buffer
		if err := json.Compact(&compact, obj); err != nil {
			panic(err)
		}
		f.Rows[i] = &store.Row{
			UID: fmt.Sprintf("0b6f6e1c-%08d-4a7e-9d1e-3f0c2a7b9e10", i), Namespace: "shop", Name: fmt.Sprintf("web-7d9f8b6c5d-%05d", i),
			ResourceVersion: uint64(100000 + i), Source: source, ObservedAt: time.Now(), Object: compact.Bytes(),
			Labels: map[string]string{"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9f8b6c5d", "version": "v1.14.2"},
			Fields: map[string]string{"metadata.name": fmt.Sprintf("web-7d9f8b6c5d-%05d", i), "metadata.namespace": "shop", "spec.nodeName": fmt.Sprintf("node-%d", i%3),
				"spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler", "spec.serviceAccountName": "web", "status.phase": "Running", "status.podIP": fmt.Sprintf("10.244.%d.%d", i%3, i%250)},
		}
	}
	return f
}

// memoryUsage sums MEMORY USAGE (every element counted) over the keys
// matching pattern.
func memoryUsage(b *testing.B, client redis.UniversalClient, pattern string) int64 {
	b.Helper()
	var total int64
	iter := client.Scan(b.Context(), 0, pattern, 1000).Iterator()
	for iter.Next(b.Context()) {
		n, err := client.MemoryUsage(b.Context(), iter.Val(), 0).Result()
		if err != nil {
			b.Fatal(err)
		}
		total += n
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
	return total
}

// BenchmarkRedisBytesPerObject measures what 10,000 realistic pods cost in
// Redis: the verified and aggregated frames, stored together (MEMORY USAGE
// of the head and the generation's chunks and delta), and one event per pod
// in the stream, each per object and against the object's compact JSON. Run
// it once:
//
//	go test ./pkg/store -run '^$' -bench RedisBytesPerObject -benchtime 1x
func BenchmarkRedisBytesPerObject(b *testing.B) {
	const n = 10000
	client, cluster := benchRedis(b)
	// Keep every event: the figure is per event, not the budget's.
	s := store.NewRedis(client, store.RedisOptions{StreamBytes: 1 << 40, MaxEvents: 1 << 30})
	f := realisticPods(cluster, store.Verified, n)
	jsonBytes := float64(objectBytes(f)) / n
	var frameBytes, eventBytes float64
	for b.Loop() {
		if err := s.PutFrame(b.Context(), f); err != nil {
			b.Fatal(err)
		}
		evs := make([]store.Event, n)
		for i, r := range f.Rows {
			e := *r
			e.ResourceVersion, e.Source = uint64(200000+i), store.Streamed
			evs[i] = store.Event{Cluster: cluster, Resource: "pods", Type: "MODIFIED", Row: &e}
		}
		for i := 0; i < n; i += 500 {
			if _, err := s.AppendEvents(b.Context(), evs[i:i+500]); err != nil {
				b.Fatal(err)
			}
		}
		frames := memoryUsage(b, client, store.HeadKey(cluster, "pods", store.Verified)+"*")
		events := memoryUsage(b, client, store.EventsKey(cluster, "pods"))
		frameBytes, eventBytes = float64(frames)/n, float64(events)/n
		if err := client.Del(b.Context(), store.EventsKey(cluster, "pods")).Err(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(jsonBytes, "json-B/obj")
	b.ReportMetric(frameBytes, "frames-B/obj")
	b.ReportMetric(eventBytes, "event-B/obj")
	b.ReportMetric(frameBytes/jsonBytes, "frames/json")
	b.ReportMetric(eventBytes/jsonBytes, "event/json")
}
