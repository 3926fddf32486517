package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/pkg/connect"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// testDefaultAgentFlags runs the plugin without any agent flag, so it looks
// for the agent where the manifests install it: namespace krm-system,
// selector app.kubernetes.io/name=krm-agent, port 8080. The cluster is
// shared, so the test takes krm-system only if nobody has it, and gives it
// back.
func testDefaultAgentFlags(t *testing.T, c *cluster.State, cs kubernetes.Interface, bin string, p *plugin) {
	ctx := t.Context()
	ns := connect.DefaultNamespace
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{"krm-e2e/owner": "TestPlugin"},
	}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		t.Skipf("namespace %s exists: another agent or test owns it, and the plugin's defaults would find its pods", ns)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Wait until it is gone, so that whoever wants krm-system next can
		// create it.
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// The pod would otherwise hold the namespace for its grace period.
		zero := int64(0)
		if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
			t.Errorf("deleting the pods in %s: %v", ns, err)
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting namespace %s: %v", ns, err)
			return
		}
		for {
			_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return
			}
			if ctx.Err() != nil {
				t.Errorf("namespace %s still there 60s after deleting it: %v", ns, err)
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	waitFor(t, 30*time.Second, "namespace "+ns+"'s default ServiceAccount", func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})

	work := clustertest.Namespace(t, c)
	for _, name := range []string{"alpha", "beta"} {
		if _, err := cs.CoreV1().Services(work).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	a := startAgent(t, bin, "--kubeconfig", c.Kubeconfig, "--resources", "services", "--namespace", work, "--verify-interval", "5s")
	a.waitReady(t, 30*time.Second)
	agentPod(t, c, cs, ns, "krm-agent-0", portOf(t, a.URL))

	sameAsKubectl(t, p, []string{"get", "services", "-n", work}, nil)
	r := p.krm(t, "version")
	if want := "Plugin Version: dev\nAgent Version: dev\nAPI Version: krm.io/v1alpha1\n"; r.code != 0 || r.stdout != want {
		t.Errorf("kubectl krm version:\n%s\nwant exit 0 and %q", r, want)
	}
}
