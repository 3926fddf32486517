package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestHistory scripts changes to a deployment with kubectl and checks that
// `kubectl krm history` reproduces them (resourceVersions as kubectl saw
// them, events, managers, changed paths), that `get --at` and an Exact
// LIST answer from history, and that history survives a restart with Redis.
func TestHistory(t *testing.T) {
	c := clustertest.Get(t)
	bin := buildAgent(t)
	p := buildPlugin(t, c)
	ns := clustertest.Namespace(t, c)
	srv := clustertest.StartRedis(t)
	args := []string{"--kubeconfig", c.Kubeconfig, "--verify-interval", "5s", "--resources", "deployments",
		"--store", "redis", "--redis-url", srv.URL(), "--cluster-name", "history-" + ns}
	agent := startAgent(t, bin, args...)
	agent.waitReady(t, 30*time.Second)
	ctx := t.Context()
	kc := func(args ...string) string {
		t.Helper()
		out, err := kubectl(ctx, c.Kubectl, c.Kubeconfig, append(args, "-n", ns)...)
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	history := func(a *agentProcess) []krmv1alpha1.Revision {
		t.Helper()
		r := p.krm(t, "--agent-url", a.URL, "history", "deployment/web", "-n", ns, "-o", "json")
		if r.code != 0 {
			t.Fatalf("history failed:\n%s", r)
		}
		var list krmv1alpha1.RevisionList
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
			t.Fatalf("decoding %s: %v", r.stdout, err)
		}
		return list.Items
	}
	has := func(a *agentProcess, rv string) func() error {
		return func() error {
			for _, r := range history(a) {
				if r.ResourceVersion == rv {
					return nil
				}
			}
			return errNotYet("revision " + rv)
		}
	}

	// Each write's own answer names the resourceVersion it made.
	jp := "jsonpath={.metadata.resourceVersion}"
	created := kc("create", "deployment", "web", "--image", "nginx:1.27", "-o", jp)
	waitFor(t, 30*time.Second, "the ADDED revision", has(agent, created))
	time.Sleep(1100 * time.Millisecond) // observed times one second apart, for --at
	between := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond)
	kc("scale", "deployment", "web", "--replicas", "3")
	scaled := kc("get", "deployment", "web", "-o", jp)
	waitFor(t, 30*time.Second, "the scaled revision", has(agent, scaled))
	kc("label", "deployment", "web", "team=shop")
	labelled := kc("get", "deployment", "web", "-o", jp)
	waitFor(t, 30*time.Second, "the labelled revision", has(agent, labelled))
	kc("delete", "deployment", "web", "--wait=false")
	waitFor(t, 30*time.Second, "the DELETED revision", func() error {
		revs := history(agent)
		if revs[len(revs)-1].Event != "DELETED" {
			return errNotYet("DELETED")
		}
		return nil
	})

	check := func(revs []krmv1alpha1.Revision) {
		t.Helper()
		byRV := map[string]krmv1alpha1.Revision{}
		var rvs []string
		for i, r := range revs {
			byRV[r.ResourceVersion] = r
			rvs = append(rvs, r.ResourceVersion)
			if r.Revision != i+1 || r.Source != "watch" {
				t.Errorf("revision %d: ordinal %d, source %s", i+1, r.Revision, r.Source)
			}
		}
		if revs[0].ResourceVersion != created || revs[0].Event != "ADDED" || revs[len(revs)-1].Event != "DELETED" {
			t.Errorf("history %v does not run from ADDED at %s to DELETED", rvs, created)
		}
		steps := []struct {
			rv, manager, path string
		}{{created, "kubectl-create", ""}, {scaled, "kubectl", "spec.replicas"}, {labelled, "kubectl-label", "metadata.labels"}}
		for _, s := range steps {
			if _, ok := byRV[s.rv]; !ok {
				t.Errorf("history %v lacks resourceVersion %s, which kubectl saw", rvs, s.rv)
				continue
			}
			// The revision that made the step's change (kubectl's read
			// after it may be a controller's later one).
			r := revs[0]
			for _, x := range revs {
				if s.path != "" && slices.ContainsFunc(x.Changed, func(c string) bool { return strings.HasPrefix(c, s.path) }) {
					r = x
					break
				}
			}
			if !slices.ContainsFunc(r.Managers, func(m krmv1alpha1.ManagerEntry) bool { return strings.HasPrefix(m.Manager, s.manager) }) {
				t.Errorf("revision %s: managers %v lack %s", s.rv, r.Managers, s.manager)
			}
			if s.path != "" && !slices.ContainsFunc(r.Changed, func(c string) bool { return strings.HasPrefix(c, s.path) }) {
				t.Errorf("revision %s changed %v, want %s among them", s.rv, r.Changed, s.path)
			}
		}
	}
	before := history(agent)
	check(before)

	// get --at between the ADDED and the scale: one replica wanted.
	r := p.krm(t, "--agent-url", agent.URL, "get", "deployments", "-n", ns, "--at", between.Format(time.RFC3339Nano), "-o", "jsonpath={.items[*].spec.replicas}")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1" {
		t.Errorf("get --at between create and scale: want replicas 1\n%s", r)
	}
	r = p.krm(t, "--agent-url", agent.URL, "get", "deployments", "-n", ns, "--at", "2000-01-01T00:00:00Z")
	if r.code == 0 || !strings.Contains(r.stderr, "history reaches back to") {
		t.Errorf("get --at before history began: want a failure that says how far history reaches\n%s", r)
	}
	// An Exact LIST at the scale's resourceVersion, through kubectl.
	r = p.run(t, "get", "--server", agent.URL, "--raw",
		"/apis/apps/v1/namespaces/"+ns+"/deployments?resourceVersion="+scaled+"&resourceVersionMatch=Exact")
	if r.code != 0 || !strings.Contains(r.stdout, `"resourceVersion":"`+scaled+`"`) || !strings.Contains(r.stdout, `"replicas":3,"revisionHistoryLimit"`) {
		t.Errorf("an Exact LIST at %s:\n%s", scaled, r)
	}

	// A restarted agent keeps the history in Redis.
	if err := agent.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	again := startAgent(t, bin, args...)
	again.waitReady(t, 30*time.Second)
	after := history(again)
	if len(after) != len(before) {
		t.Fatalf("after a restart history has %d revisions, before %d", len(after), len(before))
	}
	check(after)
	opts, _ := redis.ParseURL(srv.URL())
	rc := redis.NewClient(opts)
	defer rc.Close()
	keys, _ := rc.Keys(ctx, "krm:*:history").Result()
	if len(keys) == 0 {
		t.Error("no history stream in Redis")
	}
}

type errNotYet string

func (e errNotYet) Error() string { return "not yet: " + string(e) }
