package manifests_test

import (
	"bytes"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/krm-project/krm/internal/manifests"
)

// rendered is one install's objects, by kind.
type rendered struct {
	deployments []appsv1.Deployment
	policies    []networkingv1.NetworkPolicy
	secrets     []corev1.Secret
}

func render(t *testing.T, target manifests.Target) rendered {
	t.Helper()
	out, err := manifests.Render("../../manifests", target)
	if err != nil {
		t.Fatal(err)
	}
	var r rendered
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%s: %v", target.File, err)
		}
		var into any
		switch meta.Kind {
		case "Deployment":
			r.deployments = append(r.deployments, appsv1.Deployment{})
			into = &r.deployments[len(r.deployments)-1]
		case "NetworkPolicy":
			r.policies = append(r.policies, networkingv1.NetworkPolicy{})
			into = &r.policies[len(r.policies)-1]
		case "Secret":
			r.secrets = append(r.secrets, corev1.Secret{})
			into = &r.secrets[len(r.secrets)-1]
		default:
			continue
		}
		if err := yaml.UnmarshalStrict(doc, into); err != nil {
			t.Fatalf("%s: decoding a %s: %v", target.File, meta.Kind, err)
		}
	}
	return r
}

// Every pod an install runs is selected by a NetworkPolicy that limits what
// may connect to it.
func TestEveryPodHasANetworkPolicy(t *testing.T) {
	for _, target := range manifests.Targets {
		r := render(t, target)
		for _, d := range r.deployments {
			covered := false
			for _, p := range r.policies {
				sel := labels.SelectorFromSet(p.Spec.PodSelector.MatchLabels)
				for _, typ := range p.Spec.PolicyTypes {
					if typ == networkingv1.PolicyTypeIngress && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						covered = true
					}
				}
			}
			if !covered {
				t.Errorf("%s: the pods of deployment %s have no ingress NetworkPolicy", target.File, d.Name)
			}
		}
	}
}

// The agent serves object data only on loopback inside its pod, and the
// only port other pods may reach serves health and metrics.
func TestAgentServesObjectsOnlyOnLoopback(t *testing.T) {
	for _, target := range manifests.Targets {
		r := render(t, target)
		var agent *appsv1.Deployment
		for i := range r.deployments {
			if r.deployments[i].Name == "krm-agent" {
				agent = &r.deployments[i]
			}
		}
		if agent == nil {
			t.Fatalf("%s: no krm-agent deployment", target.File)
		}
		c := agent.Spec.Template.Spec.Containers[0]
		args := strings.Join(c.Args, " ")
		if !strings.Contains(args, "--listen=127.0.0.1:") || !strings.Contains(args, "--health-listen=:8081") {
			t.Errorf("%s: agent args %q: want the API on 127.0.0.1 and health on :8081", target.File, args)
		}
		// Besides health, only the secure listener, which authorizes every
		// request, may take connections from other pods.
		secure := strings.Contains(args, "--secure-listen=:8443")
		allowed := map[string]bool{"health": true, "https": secure}
		for _, p := range c.Ports {
			if !allowed[p.Name] || (p.Name == "health" && p.ContainerPort != 8081) || (p.Name == "https" && p.ContainerPort != 8443) {
				t.Errorf("%s: agent port %+v: want health 8081 (and https 8443 with --secure-listen) only", target.File, p)
			}
		}
		for _, probe := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
			if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Port.String() != "health" {
				t.Errorf("%s: agent probe %+v: want an HTTP GET on the health port", target.File, probe)
			}
		}
		for _, p := range r.policies {
			if p.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "krm-agent" {
				continue
			}
			for _, in := range p.Spec.Ingress {
				for _, port := range in.Ports {
					if port.Port == nil || !allowed[port.Port.String()] {
						t.Errorf("%s: NetworkPolicy %s admits the agent's port %v: want only health (and https with --secure-listen)", target.File, p.Name, port.Port)
					}
					if port.Port != nil && port.Port.String() == "https" && len(in.From) == 0 {
						t.Errorf("%s: NetworkPolicy %s admits the secure port from anywhere: want named namespaces", target.File, p.Name)
					}
				}
				if len(in.Ports) == 0 {
					t.Errorf("%s: NetworkPolicy %s admits every port of the agent", target.File, p.Name)
				}
			}
		}
	}
}

// Redis takes its password from the Secret's redis.conf, the agent from its
// password key: they must agree, and neither is in any container's argv.
func TestRedisSecretAgreesAndStaysOutOfArgv(t *testing.T) {
	for _, target := range manifests.Targets {
		r := render(t, target)
		var secret *corev1.Secret
		for i := range r.secrets {
			if strings.HasPrefix(r.secrets[i].Name, "krm-redis") {
				secret = &r.secrets[i]
			}
		}
		if secret == nil {
			t.Fatalf("%s: no krm-redis Secret", target.File)
		}
		password := string(secret.Data["password"])
		conf := string(secret.Data["redis.conf"])
		if password == "" || strings.TrimSpace(conf) != "requirepass "+password {
			t.Errorf("%s: Secret %s: redis.conf %q does not require the password key's %q", target.File, secret.Name, conf, password)
		}
		for _, d := range r.deployments {
			for _, c := range d.Spec.Template.Spec.Containers {
				for _, a := range append(append([]string{}, c.Command...), c.Args...) {
					if strings.Contains(a, "requirepass") || strings.Contains(a, password) || strings.Contains(a, "REDIS_PASSWORD") {
						t.Errorf("%s: deployment %s container %s has the Redis password in its argv: %q", target.File, d.Name, c.Name, a)
					}
				}
			}
		}
	}
}

// Every namespaced object of every install is in krm-system. A
// component's resources miss the base's namespace transformer, so they name
// it themselves; one that does not lands in whatever namespace kubectl
// defaults to, where the agent's Role does not reach and its
// NetworkPolicies select nothing.
func TestEverythingInKrmSystem(t *testing.T) {
	clusterScoped := map[string]bool{"Namespace": true, "ClusterRole": true, "ClusterRoleBinding": true}
	for _, target := range manifests.Targets {
		out, err := manifests.Render("../../manifests", target)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range bytes.Split(out, []byte("\n---\n")) {
			var obj struct {
				Kind     string
				Metadata struct{ Name, Namespace string }
			}
			if err := yaml.Unmarshal(doc, &obj); err != nil {
				t.Fatalf("%s: %v", target.File, err)
			}
			if !clusterScoped[obj.Kind] && obj.Metadata.Namespace != "krm-system" {
				t.Errorf("%s: %s %s is in namespace %q, want krm-system", target.File, obj.Kind, obj.Metadata.Name, obj.Metadata.Namespace)
			}
		}
	}
}
