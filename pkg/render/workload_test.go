package render_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// testLabel marks every object the comparison creates, so that -A -l finds
// ours and nobody else's on the shared cluster.
const testLabel = "krm.test/render"

// unschedulable keeps a pod off every node, so that neither kwok nor a
// kubelet ever writes its status and the test can write any status it likes:
// that is how the states kwok never reaches (CrashLoopBackOff, Init:…) get
// in front of the real kubectl.
var unschedulable = map[string]string{"krm.test/no-such-node": "true"}

// finalizer holds pods in Terminating until the test lets go.
const finalizer = "krm.test/hold"

type workload struct {
	t    *testing.T
	cs   kubernetes.Interface
	ns   string
	mark string
}

func (w *workload) meta(name string, labels map[string]string) metav1.ObjectMeta {
	l := map[string]string{testLabel: w.mark}
	for k, v := range labels {
		l[k] = v
	}
	return metav1.ObjectMeta{Name: name, Namespace: w.ns, Labels: l}
}

func container(name string) corev1.Container {
	return corev1.Container{Name: name, Image: "krm.test/" + name + ":1"}
}

func (w *workload) pod(name string, labels map[string]string, spec corev1.PodSpec) {
	w.t.Helper()
	p := &corev1.Pod{ObjectMeta: w.meta(name, labels), Spec: spec}
	if _, err := w.cs.CoreV1().Pods(w.ns).Create(w.t.Context(), p, metav1.CreateOptions{}); err != nil {
		w.t.Fatalf("creating pod %s/%s: %v", w.ns, name, err)
	}
}

// craftedPod creates an unschedulable pod and, once the scheduler has said
// so, gives it the status set makes.
func (w *workload) craftedPod(name string, labels map[string]string, spec corev1.PodSpec, set func(*corev1.PodStatus)) {
	w.t.Helper()
	spec.NodeSelector = unschedulable
	w.pod(name, labels, spec)
	ctx := w.t.Context()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var p *corev1.Pod
		// Wait for the scheduler's PodScheduled=False first: writing the
		// status before it would only have it rewritten.
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			if p, err = w.cs.CoreV1().Pods(w.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
				return err
			}
			scheduled := false
			for _, c := range p.Status.Conditions {
				scheduled = scheduled || c.Type == corev1.PodScheduled
			}
			if scheduled || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		set(&p.Status)
		_, err := w.cs.CoreV1().Pods(w.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		w.t.Fatalf("setting the status of pod %s/%s: %v", w.ns, name, err)
	}
}

// terminate deletes a pod that carries the finalizer, leaving it Terminating.
func (w *workload) terminate(name string) {
	w.t.Helper()
	if err := w.cs.CoreV1().Pods(w.ns).Delete(w.t.Context(), name, metav1.DeleteOptions{}); err != nil {
		w.t.Fatalf("deleting pod %s/%s: %v", w.ns, name, err)
	}
}

// release removes the finalizer from every pod of the namespace, so that it
// can be deleted.
func (w *workload) release() {
	ctx := context.Background()
	pods, err := w.cs.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	patch := []byte(`{"metadata":{"finalizers":null}}`)
	for _, p := range pods.Items {
		if len(p.Finalizers) > 0 {
			_, _ = w.cs.CoreV1().Pods(w.ns).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{})
		}
	}
}

func ago(d time.Duration) metav1.Time {
	return metav1.NewTime(time.Now().Add(-d).Truncate(time.Second))
}

func running(name string, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, Image: "krm.test/" + name + ":1", Ready: ready, Started: ptrTo(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(10 * time.Minute)}},
	}
}

func waiting(name, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, Image: "krm.test/" + name + ":1", Started: ptrTo(false),
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
	}
}

func terminated(name string, exitCode int32, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: name, Image: "krm.test/" + name + ":1", Started: ptrTo(false),
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: exitCode, Reason: reason, StartedAt: ago(9 * time.Minute), FinishedAt: ago(8 * time.Minute),
		}},
	}
}

func lastTerminated(finished time.Duration) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: 1, Reason: "Error", StartedAt: ago(finished + time.Minute), FinishedAt: ago(finished),
	}}
}

func condition(t corev1.PodConditionType, s corev1.ConditionStatus) corev1.PodCondition {
	return corev1.PodCondition{Type: t, Status: s, LastTransitionTime: ago(time.Minute)}
}

// pods makes one pod in every state kubectl tells apart: kwok runs the
// schedulable ones; the test writes the status of the others.
func (w *workload) pods() {
	web := map[string]string{"app": "web", "tier": "frontend"}
	one := corev1.PodSpec{Containers: []corev1.Container{container("app")}}

	w.pod("kwok-running", web, one)
	w.pod("kwok-init", map[string]string{"app": "db"}, corev1.PodSpec{
		InitContainers: []corev1.Container{container("migrate")}, Containers: []corev1.Container{container("app")},
	})
	sidecar := container("log-shipper")
	sidecar.RestartPolicy = ptrTo(corev1.ContainerRestartPolicyAlways)
	w.pod("kwok-sidecar", nil, corev1.PodSpec{
		InitContainers: []corev1.Container{sidecar}, Containers: []corev1.Container{container("app")},
	})
	w.pod("kwok-gates", nil, corev1.PodSpec{
		Containers:     []corev1.Container{container("app")},
		ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "krm.test/gate-a"}},
	})
	// Bound to a node that does not exist: nothing ever runs it.
	w.pod("lost-node", nil, corev1.PodSpec{NodeName: "krm-no-such-node", Containers: []corev1.Container{container("app")}})
	w.pod("unschedulable", map[string]string{"app": "batch"}, corev1.PodSpec{
		NodeSelector: unschedulable, Containers: []corev1.Container{container("app")},
	})

	w.craftedPod("container-creating", nil, one, func(s *corev1.PodStatus) {
		s.ContainerStatuses = []corev1.ContainerStatus{waiting("app", "ContainerCreating")}
	})
	w.craftedPod("crashloop", map[string]string{"app": "web"}, one, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		c := waiting("app", "CrashLoopBackOff")
		c.RestartCount = 5
		c.LastTerminationState = lastTerminated(5 * time.Minute)
		s.ContainerStatuses = []corev1.ContainerStatus{c}
	})
	w.craftedPod("restarted-seconds-ago", nil, one, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.Conditions = append(s.Conditions, condition(corev1.PodReady, corev1.ConditionTrue))
		c := running("app", true)
		c.RestartCount = 2
		c.LastTerminationState = lastTerminated(30 * time.Second)
		s.ContainerStatuses = []corev1.ContainerStatus{c}
	})
	w.craftedPod("completed", map[string]string{"app": "batch", "tier": "jobs"}, corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{container("app")},
	}, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodSucceeded
		s.ContainerStatuses = []corev1.ContainerStatus{terminated("app", 0, "Completed")}
	})
	w.craftedPod("error", nil, corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{container("app")},
	}, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodFailed
		s.ContainerStatuses = []corev1.ContainerStatus{terminated("app", 1, "Error")}
	})
	w.craftedPod("one-of-two-ready", nil, corev1.PodSpec{
		Containers: []corev1.Container{container("app"), container("proxy")},
	}, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = []corev1.ContainerStatus{running("app", true), running("proxy", false)}
	})
	w.craftedPod("completed-one-running", nil, corev1.PodSpec{
		Containers: []corev1.Container{container("main"), container("logger")},
	}, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = []corev1.ContainerStatus{terminated("main", 0, "Completed"), running("logger", true)}
	})
	initSpec := corev1.PodSpec{InitContainers: []corev1.Container{container("migrate")}, Containers: []corev1.Container{container("app")}}
	w.craftedPod("init-running", nil, initSpec, func(s *corev1.PodStatus) {
		s.Conditions = append(s.Conditions, condition(corev1.PodInitialized, corev1.ConditionFalse))
		s.InitContainerStatuses = []corev1.ContainerStatus{running("migrate", false)}
		s.ContainerStatuses = []corev1.ContainerStatus{waiting("app", "PodInitializing")}
	})
	w.craftedPod("init-crashloop", nil, initSpec, func(s *corev1.PodStatus) {
		s.Conditions = append(s.Conditions, condition(corev1.PodInitialized, corev1.ConditionFalse))
		c := waiting("migrate", "CrashLoopBackOff")
		c.RestartCount = 3
		c.LastTerminationState = lastTerminated(2 * time.Minute)
		s.InitContainerStatuses = []corev1.ContainerStatus{c}
		s.ContainerStatuses = []corev1.ContainerStatus{waiting("app", "PodInitializing")}
	})
	w.craftedPod("pod-initializing", nil, initSpec, func(s *corev1.PodStatus) {
		s.Conditions = append(s.Conditions, condition(corev1.PodInitialized, corev1.ConditionTrue))
		s.InitContainerStatuses = []corev1.ContainerStatus{terminated("migrate", 0, "Completed")}
		s.ContainerStatuses = []corev1.ContainerStatus{waiting("app", "PodInitializing")}
	})
	w.craftedPod("sidecar-restarted", nil, corev1.PodSpec{
		InitContainers: []corev1.Container{sidecar, container("migrate")}, Containers: []corev1.Container{container("app")},
	}, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.Conditions = append(s.Conditions, condition(corev1.PodInitialized, corev1.ConditionTrue), condition(corev1.PodReady, corev1.ConditionTrue))
		side := running("log-shipper", true)
		side.RestartCount = 4
		side.LastTerminationState = lastTerminated(44 * time.Minute)
		migrate := terminated("migrate", 0, "Completed")
		migrate.RestartCount = 1
		migrate.LastTerminationState = lastTerminated(50 * time.Minute)
		s.InitContainerStatuses = []corev1.ContainerStatus{side, migrate}
		s.ContainerStatuses = []corev1.ContainerStatus{running("app", true)}
	})
	w.craftedPod("gates-half", nil, corev1.PodSpec{
		Containers:     []corev1.Container{container("app")},
		ReadinessGates: []corev1.PodReadinessGate{{ConditionType: "krm.test/gate-a"}, {ConditionType: "krm.test/gate-b"}},
	}, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.Conditions = append(s.Conditions, condition("krm.test/gate-a", corev1.ConditionTrue), condition("krm.test/gate-b", corev1.ConditionFalse))
		s.ContainerStatuses = []corev1.ContainerStatus{running("app", true)}
	})
	w.craftedPod("nominated", nil, one, func(s *corev1.PodStatus) {
		s.NominatedNodeName = "kwok-node-0"
	})

	held := one
	w.craftedPod("terminating", map[string]string{"app": "web"}, held, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = []corev1.ContainerStatus{running("app", true)}
	})
	w.craftedPod("node-lost", nil, held, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.Reason = "NodeLost"
		s.ContainerStatuses = []corev1.ContainerStatus{running("app", true)}
	})
	for _, name := range []string{"terminating", "node-lost"} {
		patch := []byte(`{"metadata":{"finalizers":["` + finalizer + `"]}}`)
		if _, err := w.cs.CoreV1().Pods(w.ns).Patch(w.t.Context(), name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			w.t.Fatal(err)
		}
		w.terminate(name)
	}
}

func (w *workload) deployment(name string, replicas int32, labels map[string]string, spec corev1.PodSpec) {
	w.t.Helper()
	sel := map[string]string{"app": name}
	podLabels := map[string]string{"app": name, testLabel: w.mark}
	d := &appsv1.Deployment{
		ObjectMeta: w.meta(name, labels),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: podLabels}, Spec: spec},
		},
	}
	if _, err := w.cs.AppsV1().Deployments(w.ns).Create(w.t.Context(), d, metav1.CreateOptions{}); err != nil {
		w.t.Fatalf("creating deployment %s/%s: %v", w.ns, name, err)
	}
}

func (w *workload) deployments() {
	one := corev1.PodSpec{Containers: []corev1.Container{container("app")}}
	w.deployment("web", 3, map[string]string{"app": "web", "tier": "frontend"}, one)
	w.deployment("scaled-to-zero", 0, nil, one)
	w.deployment("many", 12, map[string]string{"tier": "backend"}, corev1.PodSpec{Containers: []corev1.Container{container("app"), container("sidecar")}})
	w.deployment("never-ready", 2, nil, corev1.PodSpec{NodeSelector: unschedulable, Containers: []corev1.Container{container("app")}})
}

func (w *workload) service(name string, labels map[string]string, spec corev1.ServiceSpec, status *corev1.ServiceStatus) {
	w.t.Helper()
	ctx := w.t.Context()
	s, err := w.cs.CoreV1().Services(w.ns).Create(ctx, &corev1.Service{ObjectMeta: w.meta(name, labels), Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("creating service %s/%s: %v", w.ns, name, err)
	}
	if status != nil {
		s.Status = *status
		if _, err := w.cs.CoreV1().Services(w.ns).UpdateStatus(ctx, s, metav1.UpdateOptions{}); err != nil {
			w.t.Fatalf("setting the status of service %s/%s: %v", w.ns, name, err)
		}
	}
}

func port(name string, p int32, proto corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, Protocol: proto, TargetPort: intstr.FromInt32(p)}
}

func (w *workload) services() {
	web := map[string]string{"app": "web", "tier": "frontend"}
	w.service("web", map[string]string{"app": "web"}, corev1.ServiceSpec{
		Selector: web, Ports: []corev1.ServicePort{port("http", 80, corev1.ProtocolTCP), port("https", 443, corev1.ProtocolTCP)},
	}, nil)
	w.service("headless", nil, corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{port("", 5432, corev1.ProtocolTCP)},
	}, nil)
	w.service("headless-no-ports", nil, corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone}, nil)
	w.service("nodeport", nil, corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, Selector: web,
		Ports: []corev1.ServicePort{port("http", 80, corev1.ProtocolTCP), port("dns", 53, corev1.ProtocolUDP), port("sctp", 9000, corev1.ProtocolSCTP)},
	}, nil)
	w.service("lb-pending", nil, corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: web, Ports: []corev1.ServicePort{port("https", 443, corev1.ProtocolTCP)},
	}, nil)
	w.service("lb-ready", map[string]string{"tier": "edge"}, corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: web,
		Ports: []corev1.ServicePort{port("http", 80, corev1.ProtocolTCP), port("https", 443, corev1.ProtocolTCP)},
	}, &corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{
		{Hostname: "a1b2c3d4e5f6-1234567890.eu-west-1.elb.amazonaws.com"}, {IP: "203.0.113.10"}, {IP: "198.51.100.7"},
	}}})
	w.service("lb-external-ips", nil, corev1.ServiceSpec{
		Type: corev1.ServiceTypeLoadBalancer, Selector: web, ExternalIPs: []string{"192.0.2.1", "192.0.2.2"},
		Ports: []corev1.ServicePort{port("http", 80, corev1.ProtocolTCP)},
	}, &corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "203.0.113.11"}}}})
	w.service("clusterip-external-ips", nil, corev1.ServiceSpec{
		Selector: web, ExternalIPs: []string{"192.0.2.4"}, Ports: []corev1.ServicePort{port("", 8080, corev1.ProtocolTCP)},
	}, nil)
	w.service("external-name", map[string]string{"tier": "backend"}, corev1.ServiceSpec{
		Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com",
	}, nil)
}

func (w *workload) ingress(name string, labels map[string]string, spec networkingv1.IngressSpec, lb []networkingv1.IngressLoadBalancerIngress) {
	w.t.Helper()
	ctx := w.t.Context()
	ing, err := w.cs.NetworkingV1().Ingresses(w.ns).Create(ctx, &networkingv1.Ingress{ObjectMeta: w.meta(name, labels), Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatalf("creating ingress %s/%s: %v", w.ns, name, err)
	}
	if lb != nil {
		ing.Status.LoadBalancer.Ingress = lb
		if _, err := w.cs.NetworkingV1().Ingresses(w.ns).UpdateStatus(ctx, ing, metav1.UpdateOptions{}); err != nil {
			w.t.Fatalf("setting the status of ingress %s/%s: %v", w.ns, name, err)
		}
	}
}

func rule(host string) networkingv1.IngressRule {
	pt := networkingv1.PathTypePrefix
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pt, Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}},
		}}},
	}}}
}

func (w *workload) ingresses() {
	backend := &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}
	w.ingress("default-backend", nil, networkingv1.IngressSpec{DefaultBackend: backend}, nil)
	w.ingress("one-host", map[string]string{"app": "web"}, networkingv1.IngressSpec{
		IngressClassName: ptrTo("nginx"), Rules: []networkingv1.IngressRule{rule("www.example.com")},
	}, []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.20"}})
	w.ingress("tls", nil, networkingv1.IngressSpec{
		IngressClassName: ptrTo("nginx"),
		TLS:              []networkingv1.IngressTLS{{Hosts: []string{"secure.example.com"}, SecretName: "tls"}},
		Rules:            []networkingv1.IngressRule{rule("secure.example.com"), rule("api.example.com")},
	}, []networkingv1.IngressLoadBalancerIngress{{Hostname: "k8s-default-tls-0123456789.elb.amazonaws.com"}, {IP: "203.0.113.21"}})
	w.ingress("many-hosts", map[string]string{"tier": "frontend"}, networkingv1.IngressSpec{
		Rules: []networkingv1.IngressRule{rule("a.example.com"), rule(""), rule("b.example.com"), rule("c.example.com"), rule("d.example.com")},
	}, nil)
}

func (w *workload) claim(name string, labels map[string]string, spec corev1.PersistentVolumeClaimSpec) {
	w.t.Helper()
	if spec.AccessModes == nil {
		spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
	c := &corev1.PersistentVolumeClaim{ObjectMeta: w.meta(name, labels), Spec: spec}
	if _, err := w.cs.CoreV1().PersistentVolumeClaims(w.ns).Create(w.t.Context(), c, metav1.CreateOptions{}); err != nil {
		w.t.Fatalf("creating claim %s/%s: %v", w.ns, name, err)
	}
}

func (w *workload) claims() {
	w.claim("standard", map[string]string{"app": "db"}, corev1.PersistentVolumeClaimSpec{StorageClassName: ptrTo("standard")})
	w.claim("no-class", nil, corev1.PersistentVolumeClaimSpec{})
	w.claim("empty-class", nil, corev1.PersistentVolumeClaimSpec{StorageClassName: ptrTo("")})
	w.claim("block", map[string]string{"tier": "storage"}, corev1.PersistentVolumeClaimSpec{
		StorageClassName: ptrTo("fast"), VolumeMode: ptrTo(corev1.PersistentVolumeBlock),
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany, corev1.ReadOnlyMany},
	})
	// Names a volume that does not exist; the volume controller marks it
	// Lost, and kubectl shows the volume but no capacity.
	w.claim("named-volume", nil, corev1.PersistentVolumeClaimSpec{StorageClassName: ptrTo(""), VolumeName: "krm-no-such-volume"})
	w.claim("attributes-class", nil, corev1.PersistentVolumeClaimSpec{StorageClassName: ptrTo("standard"), VolumeAttributesClassName: ptrTo("gold")})
}

func ptrTo[T any](v T) *T { return &v }
