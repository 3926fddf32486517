package manifests_test

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/krm-project/krm/internal/manifests"
	"github.com/krm-project/krm/internal/secrets"
)

// rendered is one install's objects, by kind.
type rendered struct {
	deployments []appsv1.Deployment
	policies    []networkingv1.NetworkPolicy
	secrets     []corev1.Secret
	roles       []rbacv1.Role
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
		case "Role":
			r.roles = append(r.roles, rbacv1.Role{})
			into = &r.roles[len(r.roles)-1]
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

// deployment returns the install's Deployment name, failing the test
// without it.
func (r rendered) deployment(t *testing.T, file, name string) *appsv1.Deployment {
	t.Helper()
	for i := range r.deployments {
		if r.deployments[i].Name == name {
			return &r.deployments[i]
		}
	}
	t.Fatalf("%s: no deployment %s", file, name)
	return nil
}

// ensured returns the Secrets the agent pod's initContainers generate, by
// name, parsed from their ensure-secret arguments as the command parses
// them.
func ensured(t *testing.T, file string, agent *appsv1.Deployment) map[string]secrets.Spec {
	t.Helper()
	out := map[string]secrets.Spec{}
	for _, c := range agent.Spec.Template.Spec.InitContainers {
		if len(c.Args) == 0 || c.Args[0] != "ensure-secret" {
			t.Errorf("%s: initContainer %s runs %q, not ensure-secret", file, c.Name, c.Args)
			continue
		}
		var name string
		var data []string
		for _, a := range c.Args[1:] {
			if v, ok := strings.CutPrefix(a, "--name="); ok {
				name = v
			}
			if v, ok := strings.CutPrefix(a, "--data="); ok {
				data = append(data, v)
			}
		}
		tmpl, err := secrets.ParseData(data)
		if err != nil {
			t.Fatalf("%s: initContainer %s: %v", file, c.Name, err)
		}
		spec := secrets.Spec{Namespace: "krm-system", Name: name, Templates: tmpl}
		if err := spec.Validate(); err != nil {
			t.Fatalf("%s: initContainer %s: %v", file, c.Name, err)
		}
		out[name] = spec
	}
	return out
}

// envFromSecret returns the Secret and key container c's variable name
// comes from, or fails the test.
func envFromSecret(t *testing.T, file string, c corev1.Container, name string) (secret, key string) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name != name {
			continue
		}
		if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Fatalf("%s: container %s's %s does not come from a Secret: %+v", file, c.Name, name, e)
		}
		return e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key
	}
	t.Fatalf("%s: container %s has no %s", file, c.Name, name)
	return "", ""
}

// allContainers are a pod's init and regular containers.
func allContainers(d *appsv1.Deployment) []corev1.Container {
	return append(append([]corev1.Container{}, d.Spec.Template.Spec.InitContainers...), d.Spec.Template.Spec.Containers...)
}

// No install carries a password: the agent pod's initContainer generates
// the Secret krm-redis, whose keys agree (Redis reads requirepass from
// redis.conf, the agent the password key), and the password reaches each
// process through a file or the environment, never its argv.
func TestRedisSecretAgreesAndStaysOutOfArgv(t *testing.T) {
	const password = "test-password-0123456789"
	for _, target := range manifests.Targets {
		r := render(t, target)
		for _, s := range r.secrets {
			t.Errorf("%s: the install carries Secret %s: every Secret must be generated in the cluster, not committed", target.File, s.Name)
		}
		agent := r.deployment(t, target.File, "krm-agent")
		spec, ok := ensured(t, target.File, agent)["krm-redis"]
		if !ok {
			t.Fatalf("%s: no initContainer of the agent pod generates Secret krm-redis", target.File)
		}
		data := spec.Render(password)
		if string(data["password"]) != password || strings.TrimSpace(string(data["redis.conf"])) != "requirepass "+password {
			t.Errorf("%s: krm-redis would hold password %q and redis.conf %q: want redis.conf to require the password key's value", target.File, data["password"], data["redis.conf"])
		}

		if sec, key := envFromSecret(t, target.File, agent.Spec.Template.Spec.Containers[0], "KRM_REDIS_PASSWORD"); sec != "krm-redis" || key != "password" {
			t.Errorf("%s: the agent's KRM_REDIS_PASSWORD comes from %s/%s, want krm-redis/password", target.File, sec, key)
		}
		redis := r.deployment(t, target.File, "krm-redis")
		mounted := false
		for _, v := range redis.Spec.Template.Spec.Volumes {
			if v.Secret == nil || v.Secret.SecretName != "krm-redis" {
				continue
			}
			for _, item := range v.Secret.Items {
				mounted = mounted || item.Key == "redis.conf"
			}
			if v.Secret.Optional != nil && *v.Secret.Optional {
				t.Errorf("%s: Redis's Secret volume is optional: Redis would start without a password", target.File)
			}
		}
		if !mounted || !slices.Contains(redis.Spec.Template.Spec.Containers[0].Args, "/etc/krm-redis/redis.conf") {
			t.Errorf("%s: Redis does not read redis.conf from the mounted Secret krm-redis", target.File)
		}

		for _, d := range r.deployments {
			for _, c := range allContainers(&d) {
				for _, a := range append(append([]string{}, c.Command...), c.Args...) {
					generated := strings.Contains(a, secrets.Placeholder) && c.Args[0] == "ensure-secret"
					if (strings.Contains(a, "requirepass") && !generated) || strings.Contains(a, "REDIS_PASSWORD") || strings.Contains(a, "-password") || strings.Contains(a, "-token") {
						t.Errorf("%s: deployment %s container %s has a password in its argv: %q", target.File, d.Name, c.Name, a)
					}
				}
			}
		}
	}
}

// With the influxdb component, InfluxDB requires authentication, with a
// user and password from the generated Secret krm-influxdb; the agent's
// token is that user:password, from the environment; and only the agent may
// connect to it.
func TestInfluxDBRequiresTheGeneratedCredentials(t *testing.T) {
	const password = "test-password-0123456789"
	checked := 0
	for _, target := range manifests.Targets {
		r := render(t, target)
		var influx *appsv1.Deployment
		for i := range r.deployments {
			if r.deployments[i].Name == "krm-influxdb" {
				influx = &r.deployments[i]
			}
		}
		if influx == nil {
			continue
		}
		checked++
		agent := r.deployment(t, target.File, "krm-agent")
		spec, ok := ensured(t, target.File, agent)["krm-influxdb"]
		if !ok {
			t.Fatalf("%s: no initContainer of the agent pod generates Secret krm-influxdb", target.File)
		}
		data := spec.Render(password)
		user := string(data["user"])
		if user == "" || string(data["password"]) != password || string(data["token"]) != user+":"+password {
			t.Errorf("%s: krm-influxdb would hold user %q, password %q, token %q: want token = user:password", target.File, user, data["password"], data["token"])
		}

		c := influx.Spec.Template.Spec.Containers[0]
		auth := false
		for _, e := range c.Env {
			auth = auth || (e.Name == "INFLUXDB_HTTP_AUTH_ENABLED" && e.Value == "true")
		}
		if !auth {
			t.Errorf("%s: InfluxDB runs without INFLUXDB_HTTP_AUTH_ENABLED=true", target.File)
		}
		// InfluxDB starts with no user; the agent creates it in a request
		// body (--influx-create-user). The image's first-start script,
		// which INFLUXDB_ADMIN_* or INFLUXDB_DB would run, passes the
		// password to a command as an argument.
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "INFLUXDB_ADMIN_") || strings.HasPrefix(e.Name, "INFLUXDB_USER") || e.Name == "INFLUXDB_DB" {
				t.Errorf("%s: InfluxDB's %s runs the image's first-start script, which puts the password in an argv", target.File, e.Name)
			}
		}
		if !slices.Contains(agent.Spec.Template.Spec.Containers[0].Args, "--influx-create-user") {
			t.Errorf("%s: the agent runs without --influx-create-user, so nothing creates InfluxDB's user", target.File)
		}
		if sec, key := envFromSecret(t, target.File, agent.Spec.Template.Spec.Containers[0], "KRM_INFLUX_TOKEN"); sec != "krm-influxdb" || key != "token" {
			t.Errorf("%s: the agent's KRM_INFLUX_TOKEN comes from %s/%s, want krm-influxdb/token", target.File, sec, key)
		}

		var policy *networkingv1.NetworkPolicy
		for i := range r.policies {
			if r.policies[i].Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] == "krm-influxdb" {
				policy = &r.policies[i]
			}
		}
		if policy == nil {
			t.Fatalf("%s: no NetworkPolicy selects InfluxDB's pods", target.File)
		}
		for _, in := range policy.Spec.Ingress {
			for _, from := range in.From {
				if from.PodSelector == nil || from.NamespaceSelector != nil || from.IPBlock != nil || from.PodSelector.MatchLabels["app.kubernetes.io/name"] != "krm-agent" {
					t.Errorf("%s: NetworkPolicy %s admits %+v to InfluxDB: want the agent's pods only", target.File, policy.Name, from)
				}
			}
			if len(in.From) == 0 {
				t.Errorf("%s: NetworkPolicy %s admits anyone to InfluxDB", target.File, policy.Name)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no install has InfluxDB")
	}
}

// The agent may read only the Secrets its initContainers generate, by
// name, and may list or watch none.
func TestSecretGrantIsByName(t *testing.T) {
	for _, target := range manifests.Targets {
		r := render(t, target)
		want := map[string]bool{}
		for name := range ensured(t, target.File, r.deployment(t, target.File, "krm-agent")) {
			want[name] = true
		}
		got := map[string]bool{}
		for _, role := range r.roles {
			for _, rule := range role.Rules {
				if !slices.Contains(rule.Resources, "secrets") {
					continue
				}
				for _, verb := range rule.Verbs {
					switch verb {
					case "create":
					case "get":
						if len(rule.ResourceNames) == 0 {
							t.Errorf("%s: Role %s may get every Secret: want resourceNames", target.File, role.Name)
						}
						for _, n := range rule.ResourceNames {
							got[n] = true
						}
					default:
						t.Errorf("%s: Role %s may %s secrets: want create, and get by name, only", target.File, role.Name, verb)
					}
				}
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: the Roles may get the Secrets %v, the initContainers ensure %v: want the same", target.File, got, want)
		}
	}
}

// Every container that runs krm-agent, the initContainers included, runs
// the same image: a component that adds one must name the image too.
func TestAgentImageIsOneImage(t *testing.T) {
	for _, target := range manifests.Targets {
		r := render(t, target)
		agent := r.deployment(t, target.File, "krm-agent")
		want := agent.Spec.Template.Spec.Containers[0].Image
		for _, c := range agent.Spec.Template.Spec.InitContainers {
			if c.Image != want {
				t.Errorf("%s: initContainer %s runs image %q, the agent %q", target.File, c.Name, c.Image, want)
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: initContainer %s is not hardened like the agent: %+v", target.File, c.Name, sc)
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
