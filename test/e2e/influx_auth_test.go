package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/krm-project/krm/internal/secrets"
	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/test/cluster"
	"github.com/krm-project/krm/test/cluster/clustertest"
)

// TestInfluxDBAuthentication runs the harness's influxd with
// authentication on, as the influxdb component runs InfluxDB, and the agent
// against it: with the right user:password in KRM_INFLUX_TOKEN its samples
// arrive; with a wrong one the agent says, at error level and in its delay
// report, that InfluxDB refused the credentials and what to set, and counts
// every point it could not write.
func TestInfluxDBAuthentication(t *testing.T) {
	c := clustertest.Get(t)
	bin := buildAgent(t)
	influx := startAuthInfluxDB(t, c)
	password, err := secrets.NewPassword()
	if err != nil {
		t.Fatal(err)
	}
	influx.query(t, "", `CREATE USER "krm" WITH PASSWORD '`+password+`' WITH ALL PRIVILEGES`)
	influx.query(t, "krm:"+password, "CREATE DATABASE krm")
	// Without credentials nothing is written: authentication is on.
	if code := influx.write(t, "", "krm_stream_delay,cluster=anonymous delay_seconds=1"); code != http.StatusUnauthorized {
		t.Fatalf("an anonymous write got HTTP %d, want 401", code)
	}

	ns := clustertest.Namespace(t, c)
	run := func(name, token string) *agentProcess {
		t.Setenv("KRM_INFLUX_TOKEN", token)
		p := startAgent(t, bin, "--kubeconfig", c.Kubeconfig, "--resources", "configmaps",
			"--namespace", ns, "--probe-interval", "200ms", "--probe-namespace", ns, "--cluster-name", name,
			"--influx-url", influx.url, "--influx-bucket", "krm")
		p.waitReady(t, 30*time.Second)
		return p
	}

	t.Run("right credentials", func(t *testing.T) {
		p := run("influx-auth-right", "krm:"+password)
		waitFor(t, 30*time.Second, "probe samples in the authenticated InfluxDB", func() error {
			n := influx.count(t, "krm:"+password, "influx-auth-right")
			if n == 0 {
				return fmt.Errorf("no samples of cluster influx-auth-right yet")
			}
			return nil
		})
		if got := agentMetric(t, p, `krm_influx_points_dropped_total{reason="unauthorized"}`); got != 0 {
			t.Errorf("points dropped as unauthorized with the right credentials: %v", got)
		}
		rep, err := p.Client.DelayReport(t.Context(), api.ProbeResource, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status.Source != "influxdb" || rep.Status.Warning != "" {
			t.Errorf("the delay report came from %q with warning %q, want influxdb and none", rep.Status.Source, rep.Status.Warning)
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		p := run("influx-auth-wrong", "krm:not-"+password)
		waitFor(t, 30*time.Second, "the agent to say InfluxDB refused its credentials", func() error {
			log := p.log.String()
			for _, line := range strings.Split(log, "\n") {
				var rec struct{ Level, Msg, Reason, Err string }
				if json.Unmarshal([]byte(line), &rec) != nil || rec.Reason != "unauthorized" {
					continue
				}
				if rec.Level != "ERROR" || !strings.Contains(rec.Err, "KRM_INFLUX_TOKEN") || !strings.Contains(rec.Err, "HTTP 401") {
					return fmt.Errorf("the log line %s does not say, at error level, that the credentials were refused and what to set", line)
				}
				if strings.Contains(line, password) {
					return fmt.Errorf("the log line carries the password: %s", line)
				}
				return nil
			}
			return fmt.Errorf("no log line about refused credentials yet")
		})
		// Every point not written is counted.
		if got := agentMetric(t, p, `krm_influx_points_dropped_total{reason="unauthorized"}`); got == 0 {
			t.Error("krm_influx_points_dropped_total{reason=\"unauthorized\"} is 0 after refused writes")
		}
		if got := agentMetric(t, p, "krm_influx_points_written_total"); got != 0 {
			t.Errorf("krm_influx_points_written_total = %v with refused credentials", got)
		}
		if n := influx.count(t, "krm:"+password, "influx-auth-wrong"); n != 0 {
			t.Errorf("%d samples written with the wrong credentials", n)
		}
		rep, err := p.Client.DelayReport(t.Context(), api.ProbeResource, "", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status.Source != "memory" || !strings.Contains(rep.Status.Warning, "refused the credentials") || !strings.Contains(rep.Status.Warning, "KRM_INFLUX_TOKEN") {
			t.Errorf("the delay report came from %q with warning %q, want memory and a warning that names the refused credentials and KRM_INFLUX_TOKEN", rep.Status.Source, rep.Status.Warning)
		}
	})
}

// TestInfluxDBUserCreatedByAgent: InfluxDB starts with authentication on
// and no user, as the influxdb component runs it; the agent with
// --influx-create-user makes its token's user the admin and creates the
// database, its samples arrive, and a second agent with another password
// is refused and told why. Nothing passes the password as an argument.
func TestInfluxDBUserCreatedByAgent(t *testing.T) {
	c := clustertest.Get(t)
	bin := buildAgent(t)
	influx := startAuthInfluxDB(t, c)
	password, err := secrets.NewPassword()
	if err != nil {
		t.Fatal(err)
	}
	ns := clustertest.Namespace(t, c)
	run := func(name, token string) *agentProcess {
		t.Setenv("KRM_INFLUX_TOKEN", token)
		p := startAgent(t, bin, "--kubeconfig", c.Kubeconfig, "--resources", "configmaps",
			"--namespace", ns, "--probe-interval", "200ms", "--probe-namespace", ns, "--cluster-name", name,
			"--influx-url", influx.url, "--influx-bucket", "krm", "--influx-create-user")
		p.waitReady(t, 30*time.Second)
		return p
	}
	p := run("influx-created", "krm:"+password)
	waitFor(t, 30*time.Second, "the agent to set InfluxDB up", func() error {
		if !strings.Contains(p.log.String(), "InfluxDB set up") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	waitFor(t, 30*time.Second, "probe samples in the InfluxDB the agent set up", func() error {
		if n := influx.count(t, "krm:"+password, "influx-created"); n == 0 {
			return fmt.Errorf("no samples of cluster influx-created yet")
		}
		return nil
	})
	if strings.Contains(p.log.String(), password) {
		t.Error("the agent's log carries the password")
	}
	// Authentication is on: without credentials nothing is written.
	if code := influx.write(t, "", "krm_stream_delay,cluster=anonymous delay_seconds=1"); code != http.StatusUnauthorized {
		t.Errorf("an anonymous write got HTTP %d, want 401", code)
	}

	other := run("influx-other", "krm:not-"+password)
	waitFor(t, 30*time.Second, "the second agent to be told its user is not InfluxDB's admin", func() error {
		if !strings.Contains(other.log.String(), `InfluxDB already has an admin user, and it is not \"krm\" with this password`) {
			return fmt.Errorf("no such log line yet")
		}
		return nil
	})
	if n := influx.count(t, "krm:"+password, "influx-other"); n != 0 {
		t.Errorf("%d samples written with the wrong password", n)
	}
}

// authInfluxDB is an influxd of the test's own, with authentication on.
type authInfluxDB struct {
	url string
}

// startAuthInfluxDB starts the cluster's influxd binary on free ports with
// auth-enabled, as INFLUXDB_HTTP_AUTH_ENABLED=true does in the image. With
// no user yet, InfluxDB lets the first admin be created without
// credentials.
func startAuthInfluxDB(t *testing.T, c *cluster.State) *authInfluxDB {
	t.Helper()
	var binary string
	for _, p := range c.Processes {
		if p.Name == "influxd" {
			binary = p.Binary
		}
	}
	if binary == "" {
		t.Fatal("the cluster runs no influxd to take the binary from")
	}
	ports := make([]int, 2)
	for i := range ports {
		p, err := cluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	dir := t.TempDir()
	conf := fmt.Sprintf(`reporting-disabled = true
bind-address = %q
[meta]
  dir = %q
[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[http]
  bind-address = %q
  auth-enabled = true
  flux-enabled = true
  log-enabled = false
[logging]
  level = "warn"
`, net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1])), filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), addr)
	path := filepath.Join(dir, "influxdb.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := startProcess(t)("influxd-auth", binary, []string{"run", "-config", path}, nil); err != nil {
		t.Fatal(err)
	}
	db := &authInfluxDB{url: "http://" + addr}
	waitFor(t, 30*time.Second, "influxd with authentication to answer /ping", func() error {
		resp, err := http.Get(db.url + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("/ping: %s", resp.Status)
		}
		return nil
	})
	return db
}

// do sends an InfluxQL or line-protocol request with user:password (none
// if empty) and returns the status and body.
func (db *authInfluxDB) do(t *testing.T, path, userPassword string, form url.Values, body string) (int, string) {
	t.Helper()
	q := url.Values{}
	if user, pw, ok := strings.Cut(userPassword, ":"); ok {
		q.Set("u", user)
		q.Set("p", pw)
	}
	for k, v := range form {
		q[k] = v
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, db.url+path+"?"+q.Encode(), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (db *authInfluxDB) query(t *testing.T, userPassword, q string) string {
	t.Helper()
	code, body := db.do(t, "/query", userPassword, url.Values{"q": {q}, "db": {"krm"}}, "")
	if code != http.StatusOK || strings.Contains(body, `"error"`) {
		t.Fatalf("InfluxQL %q: HTTP %d %s", strings.SplitN(q, " PASSWORD", 2)[0], code, body)
	}
	return body
}

func (db *authInfluxDB) write(t *testing.T, userPassword, line string) int {
	t.Helper()
	code, _ := db.do(t, "/write", userPassword, url.Values{"db": {"krm"}}, line)
	return code
}

// count returns how many stream-delay samples of cluster InfluxDB holds.
func (db *authInfluxDB) count(t *testing.T, userPassword, cluster string) int {
	t.Helper()
	body := db.query(t, userPassword, fmt.Sprintf(`SELECT count(delay_seconds) FROM krm_stream_delay WHERE "cluster" = '%s'`, cluster))
	var res struct {
		Results []struct {
			Series []struct {
				Values [][]any `json:"values"`
			} `json:"series"`
		} `json:"results"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("InfluxDB count of %s: %v\n%s", cluster, err, body)
	}
	if len(res.Results) == 0 || len(res.Results[0].Series) == 0 || len(res.Results[0].Series[0].Values) == 0 {
		return 0
	}
	row := res.Results[0].Series[0].Values[0]
	num, _ := row[len(row)-1].(json.Number)
	n, err := num.Int64()
	if err != nil {
		t.Fatalf("InfluxDB count of %s: %v\n%s", cluster, err, body)
	}
	return int(n)
}

// agentMetric returns the value of one sample line of the agent's /metrics,
// 0 when it is absent.
func agentMetric(t *testing.T, p *agentProcess, series string) float64 {
	t.Helper()
	resp, err := http.Get(p.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("/metrics %s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
