package render

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// readJSON decodes testdata/<name>.json into v.
func readJSON(t *testing.T, name string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %s.json: %v", name, err)
	}
}

// checkGolden compares got with testdata/<name>.golden, or rewrites it with
// -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./pkg/render -update to write it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, diff)
	}
}

func fixtureClock() time.Time { return fixtureNow }

// statusFixture is what `kubectl krm status` reads: the agent's
// AgentStatus and its ResourceStatusList.
type statusFixture struct {
	AgentStatus      krmv1alpha1.AgentStatus        `json:"agentStatus"`
	ResourceStatuses krmv1alpha1.ResourceStatusList `json:"resourceStatuses"`
}

// TestStatusGolden prints each testdata/status-*.json, the answers of GET
// /apis/krm.io/v1alpha1/agentstatuses/agent and …/resourcestatuses, as
// `kubectl krm status` does with each flag set.
func TestStatusGolden(t *testing.T) {
	variants := []struct {
		suffix string
		p      StatusPrinter
	}{
		{"", StatusPrinter{}},
		{"-wide", StatusPrinter{Wide: true}},
		{"-no-headers", StatusPrinter{NoHeaders: true}},
	}
	for _, fixture := range []string{"status-normal", "status-stale", "status-degraded"} {
		var f statusFixture
		readJSON(t, fixture, &f)
		for _, v := range variants {
			t.Run(fixture+v.suffix, func(t *testing.T) {
				p := v.p
				p.Now = fixtureClock
				p.Agent = f.AgentStatus.Status
				var buf bytes.Buffer
				if err := p.PrintObj(&f.ResourceStatuses, &buf); err != nil {
					t.Fatal(err)
				}
				checkGolden(t, fixture+v.suffix, buf.String())
			})
		}
	}
}

// statusCells prints fixture and returns each resource's cells by column.
func statusCells(t *testing.T, fixture string, wide bool) map[string]map[string]string {
	t.Helper()
	var f statusFixture
	readJSON(t, fixture, &f)
	var buf bytes.Buffer
	if err := (&StatusPrinter{Wide: wide, Agent: f.AgentStatus.Status, Now: fixtureClock}).PrintObj(&f.ResourceStatuses, &buf); err != nil {
		t.Fatal(err)
	}
	table, _, _ := strings.Cut(buf.String(), "\n\n") // without the replica line
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	header := lines[0]
	var starts []int
	for i := 0; i < len(header); i++ {
		if header[i] != ' ' && (i == 0 || strings.HasSuffix(header[:i], "   ")) {
			starts = append(starts, i)
		}
	}
	cut := func(line string) []string {
		var cells []string
		for i, s := range starts {
			end := len(line)
			if i+1 < len(starts) {
				end = min(starts[i+1], len(line))
			}
			cells = append(cells, strings.TrimSpace(line[min(s, len(line)):end]))
		}
		return cells
	}
	names := cut(header)
	out := map[string]map[string]string{}
	for _, l := range lines[1:] {
		cells := cut(l)
		m := map[string]string{}
		for i, n := range names {
			m[n] = cells[i]
		}
		out[cells[0]] = m
	}
	return out
}

// The goldens hold the layout; these name the cells that carry meaning.
func TestStatusCells(t *testing.T) {
	tests := []struct {
		fixture, resource string
		wide              bool
		want              map[string]string
	}{
		{"status-normal", "pods", true, map[string]string{
			"VERIFIED": "12s", "RESOURCEVERSION": "48213", "OBJECTS": "1206", "STREAM": "connected",
			"EVENTS/MIN": "37.5", "DRIFT": "0", "STORE": "redis", "EVENTS": "91204", "LISTS": "41", "TOTAL-DRIFT": "+1 -0 ~2", "LAST-ERROR": "<none>",
		}},
		{"status-normal", "services", false, map[string]string{"DRIFT": "+2 -1 ~0", "EVENTS/MIN": "0.2"}},
		{"status-normal", "certificates.cert-manager.io", false, map[string]string{"VERIFIED": "130m"}},
		{"status-stale", "pods", false, map[string]string{"VERIFIED": "62m (stale)", "STREAM": "connected"}},
		{"status-stale", "deployments", true, map[string]string{
			"VERIFIED": "<never>", "RESOURCEVERSION": "<none>", "OBJECTS": "0", "STREAM": "disconnected", "LISTS": "0",
			"LAST-ERROR": `listing deployments: Get "https://10.96.0.1:443/apis/apps/v1/deployments?limit=500": dial tcp 10.96.0.1:443: connect: connection refused`,
		}},
		{"status-stale", "nodes", true, map[string]string{"STREAM": "disconnected", "DRIFT": "0", "TOTAL-DRIFT": "+0 -2 ~0"}},
		{"status-degraded", "pods", true, map[string]string{"STORE": "redis (degraded)", "LAST-ERROR": "persisting pods: dial tcp 10.0.0.7:6379: connect: connection refused"}},
		{"status-degraded", "nodes", false, map[string]string{"STORE": "redis (degraded)", "VERIFIED": "27h"}},
	}
	for _, tt := range tests {
		row, ok := statusCells(t, tt.fixture, tt.wide)[tt.resource]
		if !ok {
			t.Errorf("%s: no row for %s", tt.fixture, tt.resource)
			continue
		}
		got := map[string]string{}
		for k := range tt.want {
			got[k] = row[k]
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s, %s (wide %v) (-want +got):\n%s", tt.fixture, tt.resource, tt.wide, diff)
		}
	}
}

func TestStatusWithoutStoreKind(t *testing.T) {
	list := &krmv1alpha1.ResourceStatusList{Items: []krmv1alpha1.ResourceStatus{{Status: krmv1alpha1.ResourceState{
		ResourceInfo: krmv1alpha1.ResourceInfo{Name: "pods"}, StreamConnected: true,
	}}}}
	var buf bytes.Buffer
	if err := (&StatusPrinter{NoHeaders: true, Now: fixtureClock}).PrintObj(list, &buf); err != nil {
		t.Fatal(err)
	}
	want := "pods   <never>   <none>   0     connected   0.0   0     <none>\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// With leader election the table is followed by the answering replica's
// role; without headers, as in scripts, it is left out.
func TestStatusRole(t *testing.T) {
	for _, tt := range []struct {
		role, leader string
		noHeaders    bool
		want         string
	}{
		{"leader", "krm-agent-5d8f_a1b2c3", false, "\nReplica: the leader (krm-agent-5d8f_a1b2c3); it watches, verifies and writes the store.\n"},
		{"follower", "krm-agent-5d8f_a1b2c3", false, "\nReplica: a follower, serving what the leader krm-agent-5d8f_a1b2c3 wrote to the store.\n"},
		{"follower", "", false, "\nReplica: a follower, serving what the leader <none> wrote to the store.\n"},
		{"follower", "krm-agent-5d8f_a1b2c3", true, ""},
		{"", "", false, ""},
	} {
		list := &krmv1alpha1.ResourceStatusList{Items: []krmv1alpha1.ResourceStatus{{Status: krmv1alpha1.ResourceState{ResourceInfo: krmv1alpha1.ResourceInfo{Name: "pods"}}}}}
		agent := krmv1alpha1.AgentState{Role: tt.role, Leader: tt.leader}
		var buf bytes.Buffer
		if err := (&StatusPrinter{NoHeaders: tt.noHeaders, Agent: agent, Now: fixtureClock}).PrintObj(list, &buf); err != nil {
			t.Fatal(err)
		}
		_, got, _ := strings.Cut(buf.String(), "<none>\n")
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("role %q leader %q no-headers %v (-want +got):\n%s", tt.role, tt.leader, tt.noHeaders, diff)
		}
	}
}
