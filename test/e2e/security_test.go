package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/krm-project/krm/internal/manifests"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestClosedByDefault runs the agent with the listeners the rendered
// manifests give it and checks that object data is reachable only on
// loopback, while the address other pods reach serves health alone.
// 127.0.0.2 stands for the pod's network address: it is this machine, but
// not the loopback address the API binds to.
func TestClosedByDefault(t *testing.T) {
	c := clustertest.Get(t)
	bin := buildAgent(t)
	listen, health := manifestListeners(t)
	apiHost, _, err := net.SplitHostPort(listen)
	if err != nil {
		t.Fatal(err)
	}
	healthHost, _, err := net.SplitHostPort(health)
	if err != nil {
		t.Fatal(err)
	}
	if apiHost != "127.0.0.1" || healthHost != "" {
		t.Fatalf("the manifests give --listen=%s --health-listen=%s; this test expects the API on 127.0.0.1 and health on every address", listen, health)
	}
	// The manifests' ports are the pod's own; the test takes free ones.
	apiPort, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	healthPort, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := startAgentOn(t, bin, net.JoinHostPort(apiHost, strconv.Itoa(apiPort)),
		"--kubeconfig", c.Kubeconfig, "--resources", "pods", "--health-listen", net.JoinHostPort(healthHost, strconv.Itoa(healthPort)))
	p.waitReady(t, 30*time.Second)

	get := func(host string, port int, path string) (int, string, error) {
		hc := &http.Client{Timeout: 5 * time.Second}
		resp, err := hc.Get(fmt.Sprintf("http://%s%s", net.JoinHostPort(host, strconv.Itoa(port)), path))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	// Through loopback (a port-forward ends there) the API answers.
	if code, body, err := get("127.0.0.1", apiPort, "/api/v1/pods"); err != nil || code != 200 {
		t.Fatalf("the API on loopback: %d %s %v", code, body, err)
	}
	// From the pod's address, nothing: the connection is refused.
	for _, path := range []string{"/api/v1/pods", "/healthz"} {
		if _, _, err := get("127.0.0.2", apiPort, path); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("GET %s on the API port at 127.0.0.2: %v, want the connection refused", path, err)
		}
	}
	// The health port answers there, with health and counts only.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/api/v1/pods": 404, "/api/v1/namespaces/default/pods": 404, "/apis/krm.io/v1alpha1/driftreports": 404} {
		code, body, err := get("127.0.0.2", healthPort, path)
		if err != nil || code != want {
			t.Errorf("GET %s on the health port at 127.0.0.2: %d %v, want %d", path, code, err, want)
		}
		if strings.Contains(body, `"kind":"Pod"`) {
			t.Errorf("GET %s on the health port served a pod", path)
		}
	}
}

// manifestListeners returns the agent's --listen and --health-listen in
// the default install.
func manifestListeners(t *testing.T) (listen, health string) {
	t.Helper()
	out, err := manifests.Render("../../manifests", manifests.Targets[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil || d.Kind != "Deployment" || d.Name != "krm-agent" {
			continue
		}
		for _, a := range d.Spec.Template.Spec.Containers[0].Args {
			if v, ok := strings.CutPrefix(a, "--listen="); ok {
				listen = v
			}
			if v, ok := strings.CutPrefix(a, "--health-listen="); ok {
				health = v
			}
		}
	}
	if listen == "" || health == "" {
		t.Fatalf("the default install's agent has --listen=%q --health-listen=%q", listen, health)
	}
	return listen, health
}
