package history

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/pkg/store"
)

// rvPlaceholder stands for each revision's resourceVersion in the
// pre-encoded revisions; the benchmark writes the real one in.
const rvPlaceholder = `"resourceVersion":"0"`

// revisionsOf encodes the revisions one object goes through, as the agent
// keeps them (encoding/json of the object, managedFields stripped):
// testdata/<kind>.json changed by each step in turn.
func revisionsOf(b *testing.B, kind string, steps []func(obj map[string]any)) [][]byte {
	b.Helper()
	raw, err := os.ReadFile("testdata/" + kind + ".json")
	if err != nil {
		b.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		b.Fatal(err)
	}
	out := make([][]byte, 0, len(steps)+1)
	for i := -1; i < len(steps); i++ {
		if i >= 0 {
			steps[i](obj)
		}
		enc, err := json.Marshal(obj)
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Contains(enc, []byte(rvPlaceholder)) {
			b.Fatalf("testdata/%s.json's resourceVersion is not %s", kind, rvPlaceholder)
		}
		out = append(out, enc)
	}
	return out
}

func field(obj map[string]any, path ...string) map[string]any {
	for _, p := range path {
		next, ok := obj[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[p] = next
		}
		obj = next
	}
	return obj
}

// stamp is the kind of time the API server writes, one second apart.
func stamp(s int) string {
	return time.Date(2026, 12, 6, 11, 0, 0, 0, time.UTC).Add(time.Duration(s) * time.Second).Format(time.RFC3339)
}

func condition(typ, status string, at int) map[string]any {
	return map[string]any{"type": typ, "status": status, "lastProbeTime": nil, "lastTransitionTime": stamp(at)}
}

// podSteps take a pod from created to running (scheduled, started,
// ready), then through cycles a busy pod sees: its container restarts and
// becomes ready again, and a controller relabels and annotates it.
func podSteps(cycles int) []func(map[string]any) {
	var at int
	conds := func(pod map[string]any, ready string) {
		at++
		field(pod, "status")["conditions"] = []any{condition("PodReadyToStartContainers", "True", 3), condition("Initialized", "True", 2),
			condition("Ready", ready, at), condition("ContainersReady", ready, at), condition("PodScheduled", "True", 1)}
	}
	container := func(pod map[string]any) map[string]any {
		st := field(pod, "status")
		cs, _ := st["containerStatuses"].([]any)
		if len(cs) == 0 {
			c := map[string]any{"name": "checkout", "image": "registry.example.com/shop/checkout:2.14.3", "imageID": "", "ready": false, "restartCount": 0, "started": false,
				"state": map[string]any{"waiting": map[string]any{"reason": "ContainerCreating"}}}
			st["containerStatuses"] = []any{c}
			return c
		}
		return cs[0].(map[string]any)
	}
	steps := []func(map[string]any){
		func(pod map[string]any) { // scheduled
			field(pod, "spec")["nodeName"] = "node-3"
			field(pod, "status")["conditions"] = []any{condition("PodScheduled", "True", 1)}
		},
		func(pod map[string]any) { // the kubelet takes it
			st := field(pod, "status")
			st["hostIP"], st["hostIPs"], st["startTime"] = "10.0.3.17", []any{map[string]any{"ip": "10.0.3.17"}}, stamp(2)
			container(pod)
			conds(pod, "False")
		},
		func(pod map[string]any) { // started
			st := field(pod, "status")
			st["phase"], st["podIP"], st["podIPs"] = "Running", "10.244.3.41", []any{map[string]any{"ip": "10.244.3.41"}}
			c := container(pod)
			c["containerID"], c["imageID"], c["started"] = "containerd://4f1c0e9a7b2d", "registry.example.com/shop/checkout@sha256:9c1f5e0d2b7a4c3e8f6d1a0b9e2c7f4a5d3b8e1c6f0a9d2e7b4c1f8a3e6d0b5c9", true
			c["state"] = map[string]any{"running": map[string]any{"startedAt": stamp(4)}}
		},
		func(pod map[string]any) { // ready
			container(pod)["ready"] = true
			conds(pod, "True")
		},
	}
	for k := 1; k <= cycles; k++ {
		steps = append(steps,
			func(pod map[string]any) { // the container restarts
				c := container(pod)
				old := c["state"].(map[string]any)["running"].(map[string]any)["startedAt"]
				c["lastState"] = map[string]any{"terminated": map[string]any{"containerID": c["containerID"], "exitCode": 137, "reason": "OOMKilled", "startedAt": old, "finishedAt": stamp(at + 1)}}
				c["containerID"] = fmt.Sprintf("containerd://%012x", 0x4f1c0e9a7b2d+k)
				c["state"] = map[string]any{"running": map[string]any{"startedAt": stamp(at + 2)}}
				c["restartCount"], c["ready"] = k, false
				conds(pod, "False")
			},
			func(pod map[string]any) { // ready again
				container(pod)["ready"] = true
				conds(pod, "True")
			},
			func(pod map[string]any) { // relabelled
				field(pod, "metadata", "labels")["shop.example.com/canary"] = strconv.FormatBool(k%2 == 0)
			},
			func(pod map[string]any) { // annotated
				field(pod, "metadata", "annotations")["shop.example.com/last-checked"] = stamp(at + 30)
			},
		)
	}
	return steps
}

// deploymentSteps scale a deployment up and down: kubectl's change of
// spec.replicas, then the controller's status as the new pods are created
// and then become ready.
func deploymentSteps(cycles int) []func(map[string]any) {
	var steps []func(map[string]any)
	gen := 1
	for k := 1; k <= cycles; k++ {
		replicas := 3 + k%5
		steps = append(steps,
			func(d map[string]any) {
				gen++
				field(d, "spec")["replicas"] = replicas
				field(d, "metadata")["generation"] = gen
			},
			func(d map[string]any) {
				st := field(d, "status")
				st["observedGeneration"], st["replicas"], st["updatedReplicas"] = gen, replicas, replicas
				st["conditions"].([]any)[0].(map[string]any)["lastUpdateTime"] = stamp(10 * k)
			},
			func(d map[string]any) {
				st := field(d, "status")
				st["readyReplicas"], st["availableReplicas"] = replicas, replicas
				st["conditions"].([]any)[1].(map[string]any)["lastUpdateTime"] = stamp(10*k + 5)
			},
		)
	}
	return steps
}

// BenchmarkRevisionBytes records realistic revisions of many objects (each
// walks through its kind's revisions, from the top again at the end) and
// reports what history holds per revision beyond each object's newest:
// B/revision as --history-max-bytes counts it (the patch, managers,
// changed paths and the revision's own fields), heap-B/revision as the Go
// heap grew, and the mean size of the objects' JSON beside them. Run it with a fixed
// -benchtime (make bench: 5000x) so that the figure is the same each
// time.
func BenchmarkRevisionBytes(b *testing.B) {
	const objects = 100
	for _, kind := range []struct {
		name string
		// steps are made afresh for each run: they keep counters.
		steps    func() []func(map[string]any)
		managers [2]string
	}{
		{"pod", func() []func(map[string]any) { return podSteps(25) }, [2]string{"kube-controller-manager", "kubelet"}},
		{"deployment", func() []func(map[string]any) { return deploymentSteps(33) }, [2]string{"kubectl-create", "kube-controller-manager"}},
	} {
		b.Run("kind="+kind.name, func(b *testing.B) {
			revs := revisionsOf(b, kind.name, kind.steps())
			l := NewLog(Options{Resource: kind.name + "s", Retention: time.Hour, MaxBytes: 1 << 40})
			l.Base(Listed{RV: 1, At: time.Now()})
			step := make([]int, objects)
			head := make([]int, objects) // each object's newest bytes
			var jsonBytes int64
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				o := i % objects
				rv := strconv.Itoa(i + 2)
				body := bytes.Replace(revs[step[o]], []byte(rvPlaceholder), []byte(`"resourceVersion":"`+rv+`"`), 1)
				event := Modified
				if step[o] == 0 && i < objects {
					event = Added
				}
				step[o]++
				if step[o] == len(revs) {
					step[o] = 1
				}
				jsonBytes += int64(len(body))
				head[o] = len(body)
				// Two managers, as managedFields give them: the one that
				// wrote this revision has a time of its own.
				managers := []krmv1alpha1.ManagerEntry{{Manager: kind.managers[0], Operation: "Update", Time: stamp(0)},
					{Manager: kind.managers[1], Operation: "Update", Time: stamp(i)}}
				l.Record(Entry{Event: event, Source: Watch, Managers: managers,
					Row: &store.Row{UID: fmt.Sprint("uid-", o), Namespace: "shop", Name: fmt.Sprint(kind.name, "-", o), ResourceVersion: uint64(i + 2), ObservedAt: time.Now(), Object: body}})
			}
			b.StopTimer()
			older := l.Revisions() - min(b.N, objects)
			if older <= 0 {
				return // too few revisions to say
			}
			// The heap the log holds beyond the objects' newest bytes
			// (which the agent's views hold anyway): the patches and
			// every structure around them, as Go allocated them.
			runtime.GC()
			runtime.ReadMemStats(&after)
			heads := 0
			for _, n := range head {
				heads += n
			}
			heap := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)-int64(heads)) / float64(older)
			runtime.KeepAlive(l)
			perRev := float64(l.Bytes()) / float64(older)
			perJSON := float64(jsonBytes) / float64(b.N)
			b.ReportMetric(perRev, "B/revision")
			b.ReportMetric(heap, "heap-B/revision")
			b.ReportMetric(perJSON, "json-B/revision")
			b.ReportMetric(100*perRev/perJSON, "%json")
		})
	}
}
