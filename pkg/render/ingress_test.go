package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIngressGolden(t *testing.T) { testGolden(t, "ingress-variants") }

func TestIngressColumns(t *testing.T) {
	tests := map[string][]string{
		// name: CLASS, HOSTS, ADDRESS, PORTS, AGE
		"default-backend": {"<none>", "*", "", "80", "3d"},
		"hostless-rule":   {"<none>", "*", "", "80", "20d"},
		// Every rule after the third counts as "more", host or not.
		"many-hosts":     {"traefik", "a.example.com,b.example.com,c.example.com + 3 more...", "", "80", "20d"},
		"one-host-class": {"nginx", "www.example.com", "203.0.113.20", "80", "120m"},
		// Addresses are sorted and never clipped.
		"tls":       {"nginx", "secure.example.com,api.example.com", "203.0.113.21,k8s-default-tls-0123456789.elb.amazonaws.com", "80, 443", "6m"},
		"dashboard": {"nginx", "grafana.example.com", "203.0.113.19,203.0.113.20", "80, 443", "100d"},
	}
	got := rows(t, "ingress-variants", TableOptions{})
	for name, want := range tests {
		if diff := cmp.Diff(want, got[name][1:]); diff != "" {
			t.Errorf("ingress %s (-want +got):\n%s", name, diff)
		}
	}
}
