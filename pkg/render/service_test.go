package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestServiceGolden(t *testing.T) { testGolden(t, "service-types") }

func TestServiceColumns(t *testing.T) {
	tests := map[string][]string{
		// name: TYPE, CLUSTER-IP, EXTERNAL-IP, PORT(S), AGE, SELECTOR
		"kubernetes": {"ClusterIP", "10.96.0.1", "<none>", "443/TCP", "90d", "<none>"},
		"web":        {"ClusterIP", "10.96.12.34", "<none>", "80/TCP,443/TCP", "2d", "app=web,tier=frontend"},
		"headless":   {"ClusterIP", "None", "<none>", "5432/TCP", "3h", "app=db"},
		"nodeport":   {"NodePort", "10.96.55.1", "<none>", "80:30080/TCP,53:30053/UDP,9000/SCTP", "9m", "app=web"},
		"lb-pending": {"LoadBalancer", "10.96.7.7", "<pending>", "443:31443/TCP", "60s", "app=web"},
		// Sorted and deduplicated, and never clipped to 16 characters:
		// kube-apiserver makes every table wide.
		"lb-long-hostname":        {"LoadBalancer", "10.96.7.8", "198.51.100.7,203.0.113.10,a1b2c3d4e5f6-1234567890.eu-west-1.elb.amazonaws.com", "80:31080/TCP,443:31444/TCP", "4d", "app=web"},
		"lb-with-external-ips":    {"LoadBalancer", "10.96.7.9", "203.0.113.11,192.0.2.1,192.0.2.2", "80:31081/TCP", "4d", "app=web"},
		"lb-pending-external-ips": {"LoadBalancer", "10.96.7.10", "192.0.2.3", "80:31082/TCP", "4d", "app=web"},
		"clusterip-external-ips":  {"ClusterIP", "10.96.7.11", "192.0.2.4,192.0.2.5", "8080/TCP", "4d", "app=web"},
		"external-name":           {"ExternalName", "<none>", "db.example.com", "<none>", "4d", "<none>"},
		"no-ports-no-selector":    {"ClusterIP", "10.96.7.12", "<none>", "<none>", "4d", "<none>"},
		"dual-stack":              {"ClusterIP", "10.96.7.13", "<none>", "80/TCP", "4d", "app=web"},
	}
	got := rows(t, "service-types", TableOptions{Wide: true})
	for name, want := range tests {
		if diff := cmp.Diff(want, got[name][1:]); diff != "" {
			t.Errorf("service %s (-want +got):\n%s", name, diff)
		}
	}
}
