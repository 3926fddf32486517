package delay

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestGrafanaDashboardQueriesExistingMetrics keeps the dashboard under
// manifests/ in step with the metrics: every series a panel queries must be
// one the agent exports.
func TestGrafanaDashboardQueriesExistingMetrics(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "manifests", "grafana", "krm-stream-delay.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard is not valid JSON: %v", err)
	}

	reg := prometheus.NewRegistry()
	w, err := NewInfluxWriter(InfluxConfig{URL: "http://127.0.0.1:1", Bucket: "krm"}, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := NewRecorder(RecorderOptions{Registerer: reg, Influx: w})
	if err != nil {
		t.Fatal(err)
	}
	rec.Record(Sample{Resource: "pods", Event: Added, Delay: time.Second, At: time.Now()})
	rec.RecordUnmeasured("c", "pods", Deleted)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, f := range families {
		exported[f.GetName()] = true
		if f.GetType().String() == "HISTOGRAM" {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				exported[f.GetName()+suffix] = true
			}
		}
	}
	// The drift counter is the agent's; its name must still be there.
	agentMetrics, err := os.ReadFile(filepath.Join("..", "agent", "metrics.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range regexp.MustCompile(`"(krm_[a-z_]+)"`).FindAllStringSubmatch(string(agentMetrics), -1) {
		exported[name[1]] = true
	}

	metric := regexp.MustCompile(`\bkrm_[a-z_]+`)
	queried := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range metric.FindAllString(tg.Expr, -1) {
				queried++
				if !exported[name] {
					t.Errorf("panel %q queries %s, which krm does not export", p.Title, name)
				}
			}
		}
	}
	if queried == 0 {
		t.Fatal("the dashboard queries no krm metric")
	}
}
