package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestKubectlServerCells checks that kinds krm has no printer for
// (configmaps, replicasets, namespaces) print through the agent as kubectl
// prints them against kube-apiserver, columns and cells alike (AGE aside),
// from the cells the agent took from kube-apiserver's own Tables; and that
// a watch prints an added configmap's row as kube-apiserver's does.
func TestKubectlServerCells(t *testing.T) {
	c := clustertest.Get(t)
	ctx := t.Context()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	agent := startAgent(t, buildAgent(t), "--kubeconfig", c.Kubeconfig, "--resources", "configmaps,replicasets,namespaces", "--verify-interval", "5s")
	agent.waitReady(t, 60*time.Second)
	k := newKubectlPair(t, c, agent.URL)

	for name, data := range map[string]map[string]string{
		"empty": nil,
		"two":   {"a": "1", "b": "2"},
	} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}}, Data: data}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "idle"}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "idle", Labels: labels},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: "example.invalid/idle:1"}}},
			},
		},
	}
	if _, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("get", func(t *testing.T) {
		for _, args := range [][]string{
			{"get", "configmaps", "-n", ns},
			{"get", "configmaps", "-n", ns, "-o", "wide"},
			{"get", "configmap", "two", "-n", ns},
			{"get", "configmaps", "-n", ns, "-l", "app=two", "--show-labels"},
			{"get", "replicasets", "-n", ns},
			{"get", "replicasets", "-n", ns, "-o", "wide"},
			{"get", "namespace", ns},
			{"get", "namespaces"},
		} {
			r := k.same(t, args...)
			// The columns kube-apiserver's printers make, not NAME and
			// AGE: the point of the cells.
			if header, _, _ := strings.Cut(r.stdout, "\n"); !strings.Contains(header, "DATA") && !strings.Contains(header, "DESIRED") && !strings.Contains(header, "STATUS") {
				t.Errorf("kubectl %s through the agent printed header %q, not the kind's own columns", strings.Join(args, " "), header)
			}
		}
	})

	t.Run("watch", func(t *testing.T) {
		args := []string{"get", "configmaps", "-n", ns, "-w"}
		api, ag := startWatch(t, k.api, args...), startWatch(t, k.agent, args...)
		for _, w := range []*watcher{api, ag} {
			waitFor(t, 30*time.Second, "kubectl get configmaps -w to print its list", func() error {
				if out := w.output(); len(out) < 3 {
					return fmt.Errorf("printed %q", out)
				}
				return nil
			})
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "added"}, Data: map[string]string{"x": "1", "y": "2", "z": "3"}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			want, got := kubectlWatchCells(api.output()), kubectlWatchCells(ag.output())
			diff := cmp.Diff(want, got)
			if diff == "" && strings.Contains(strings.Join(got, "\n"), "added") {
				t.Logf("kubectl get configmaps -w printed, against both:\n%s", strings.Join(ag.output(), "\n"))
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("kubectl get configmaps -w: through the agent it printed other lines than against kube-apiserver (-kube-apiserver +agent):\n%s\nagent:\n%s",
					diff, strings.Join(ag.output(), "\n"))
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
	})
}
