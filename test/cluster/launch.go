package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// launch is one run of Up: it starts the services in dependency order and
// records each process as soon as it exists, so a failure can stop them all.
type launch struct {
	cfg     Config
	bins    *Binaries
	pki     *pki
	state   State
	started time.Time
}

const (
	portEtcd = iota
	portEtcdPeer
	portAPIServer
	portControllerManager
	portScheduler
	portKwok
	portRedis
	portInflux
	portInfluxRPC
	numPorts
)

func (l *launch) run(ctx context.Context) (*State, error) {
	dir := l.cfg.Dir
	for _, d := range []string{dir, filepath.Join(dir, "etcd"), filepath.Join(dir, "influxdb"), filepath.Join(dir, "redis"), filepath.Join(dir, "home")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	var err error
	if l.pki, err = newPKI(filepath.Join(dir, "pki")); err != nil {
		return nil, err
	}
	ports, err := freePorts(numPorts)
	if err != nil {
		return nil, err
	}
	l.state = State{
		Dir:        dir,
		Kubeconfig: filepath.Join(dir, "kubeconfig"),
		EnvFile:    filepath.Join(dir, envFile),
		Server:     "https://" + hostPort(ports[portAPIServer]),
		RedisURL:   "redis://" + hostPort(ports[portRedis]) + "/0",
		InfluxURL:  "http://" + hostPort(ports[portInflux]),
		Kubectl:    l.bins.Kubectl,
		Ports: map[string]int{
			"etcd": ports[portEtcd], "kube-apiserver": ports[portAPIServer],
			"kube-controller-manager": ports[portControllerManager], "kube-scheduler": ports[portScheduler],
			"kwok": ports[portKwok], "redis": ports[portRedis], "influxdb": ports[portInflux],
		},
	}
	if err := l.writeKubeconfig(); err != nil {
		return nil, err
	}

	etcdURL := "http://" + hostPort(ports[portEtcd])
	peerURL := "http://" + hostPort(ports[portEtcdPeer])
	etcd, err := l.start("etcd", l.bins.Etcd, []string{
		"--name=krm", "--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=krm=" + peerURL,
		"--auto-compaction-retention=1", "--quota-backend-bytes=4294967296",
		// The cluster is thrown away after the tests; fsync buys nothing.
		"--unsafe-no-fsync", "--log-level=warn",
	}, nil)
	if err != nil {
		return nil, err
	}
	redis, err := l.start("redis", l.bins.RedisServer, []string{
		"--port", strconv.Itoa(ports[portRedis]), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", filepath.Join(dir, "redis"), "--daemonize", "no", "--loglevel", "warning",
	}, nil)
	if err != nil {
		return nil, err
	}
	influxConf, err := l.writeInfluxConfig(ports[portInflux], ports[portInfluxRPC])
	if err != nil {
		return nil, err
	}
	influx, err := l.start("influxd", l.bins.Influxd, []string{"run", "-config", influxConf}, nil)
	if err != nil {
		return nil, err
	}
	if err := l.wait(ctx, etcd, 30*time.Second, func(ctx context.Context) error { return httpOK(ctx, etcdURL+"/health") }); err != nil {
		return nil, err
	}

	apiserver, err := l.start("kube-apiserver", l.bins.KubeAPIServer, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[portAPIServer]),
		"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		"--authorization-mode=RBAC",
		"--client-ca-file=" + l.pki.CACert,
		"--tls-cert-file=" + l.pki.ServingCert, "--tls-private-key-file=" + l.pki.ServingKey,
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + l.pki.SAPub, "--service-account-signing-key-file=" + l.pki.SAKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--kubelet-client-certificate=" + l.pki.KubeletClientCert, "--kubelet-client-key=" + l.pki.KubeletClKey,
		"--kubelet-preferred-address-types=InternalIP",
		"--allow-privileged=true",
		"--shutdown-delay-duration=0s",
		// ConfigMaps bypass the watch cache, so a watch resumed from a
		// compacted resourceVersion gets 410 Gone from etcd, reliably: the
		// tests of krm's 410 recovery depend on it. See WatchCacheless.
		"--watch-cache-sizes=" + WatchCacheless + "#0",
	}, nil)
	if err != nil {
		return nil, err
	}
	if err := l.wait(ctx, apiserver, 60*time.Second, func(ctx context.Context) error {
		cs, err := l.state.Clientset()
		if err != nil {
			return err
		}
		_, err = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	if err := l.installPortForwardCRD(ctx); err != nil {
		return nil, err
	}

	cm, err := l.start("kube-controller-manager", l.bins.KubeControllerManager, []string{
		"--kubeconfig=" + l.state.Kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[portControllerManager]),
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
		"--leader-elect=false",
		"--root-ca-file=" + l.pki.CACert,
		"--service-account-private-key-file=" + l.pki.SAKey,
		"--cluster-cidr=" + podCIDR, "--service-cluster-ip-range=" + serviceCIDR,
		"--kube-api-qps=1000", "--kube-api-burst=2000",
	}, nil)
	if err != nil {
		return nil, err
	}
	sched, err := l.start("kube-scheduler", l.bins.KubeScheduler, []string{
		"--kubeconfig=" + l.state.Kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[portScheduler]),
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
		"--leader-elect=false",
		"--kube-api-qps=1000", "--kube-api-burst=2000",
	}, nil)
	if err != nil {
		return nil, err
	}
	kwokAddr := hostPort(ports[portKwok])
	kwok, err := l.start("kwok", l.bins.Kwok, []string{
		"--kubeconfig=" + l.state.Kubeconfig,
		"--config=" + l.bins.KwokStages,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + NodeAnnotation + "=fake",
		"--cidr=" + "10.0.0.0/16",
		"--node-ip=127.0.0.1",
		"--node-port=" + strconv.Itoa(ports[portKwok]),
		"--server-address=" + kwokAddr,
		"--tls-cert-file=" + l.pki.ServingCert, "--tls-private-key-file=" + l.pki.ServingKey,
		"--node-lease-duration-seconds=40",
		"--enable-crds=PortForward",
	}, []string{"HOME=" + filepath.Join(dir, "home")})
	if err != nil {
		return nil, err
	}
	if err := l.createNodes(ctx); err != nil {
		return nil, err
	}

	// Everything is started; wait for each to be ready.
	insecure := func(path string, port int) func(context.Context) error {
		return func(ctx context.Context) error { return httpsOK(ctx, "https://"+hostPort(port)+path) }
	}
	checks := []struct {
		p     *Process
		check func(context.Context) error
	}{
		{redis, func(ctx context.Context) error { return redisPing(ctx, hostPort(ports[portRedis])) }},
		{influx, func(ctx context.Context) error { return l.influxReady(ctx) }},
		{cm, insecure("/healthz", ports[portControllerManager])},
		{sched, insecure("/healthz", ports[portScheduler])},
		{kwok, insecure("/healthz", ports[portKwok])},
		{cm, l.defaultServiceAccount},
		{kwok, l.nodesReady},
	}
	for _, c := range checks {
		if err := l.wait(ctx, c.p, 60*time.Second, c.check); err != nil {
			return nil, err
		}
	}
	if err := l.state.writeEnv(); err != nil {
		return nil, err
	}
	if err := l.state.save(); err != nil {
		return nil, err
	}
	fmt.Fprintf(l.cfg.Log, "cluster ready in %s: %s, %d nodes\n", time.Since(l.started).Round(100*time.Millisecond), l.state.Server, len(l.state.Nodes))
	return &l.state, nil
}

func (l *launch) start(name, binary string, args, env []string) (*Process, error) {
	p, err := start(l.cfg.Dir, name, binary, args, env)
	if err != nil {
		return nil, err
	}
	l.state.Processes = append(l.state.Processes, p)
	// Record every process at once: if we die mid-start, Down still finds it.
	if err := l.state.save(); err != nil {
		return nil, err
	}
	return p, nil
}

// wait polls check until it succeeds, p dies, or timeout passes. The error
// names the service and quotes the end of its log.
func (l *launch) wait(ctx context.Context, p *Process, timeout time.Duration, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		if !p.Alive() {
			return fmt.Errorf("%s exited during start-up; end of %s:\n%s", p.Name, p.Log, p.tail(20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %v; end of %s:\n%s", p.Name, timeout, last, p.Log, p.tail(20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *launch) writeInfluxConfig(port, rpcPort int) (string, error) {
	d := filepath.Join(l.cfg.Dir, "influxdb")
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
  flux-enabled = true
  log-enabled = false

[logging]
  level = "warn"
`, hostPort(rpcPort), filepath.Join(d, "meta"), filepath.Join(d, "data"), filepath.Join(d, "wal"), hostPort(port))
	path := filepath.Join(d, "influxdb.conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// influxReady waits for /ping and creates the krm database.
func (l *launch) influxReady(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.state.InfluxURL+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("influxdb /ping: %s", resp.Status)
	}
	q := url.Values{"q": {"CREATE DATABASE krm"}}
	req, err = http.NewRequestWithContext(ctx, http.MethodPost, l.state.InfluxURL+"/query", strings.NewReader(q.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("influxdb CREATE DATABASE krm: %s", resp.Status)
	}
	return nil
}

var portForwardGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "portforwards"}

// installPortForwardCRD applies kwok's PortForward CRD; kwok must find it
// when it starts with --enable-crds=PortForward.
func (l *launch) installPortForwardCRD(ctx context.Context) error {
	data, err := os.ReadFile(l.bins.KwokPortForwardCRD)
	if err != nil {
		return err
	}
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal(data, &obj.Object); err != nil {
		return fmt.Errorf("parsing %s: %w", l.bins.KwokPortForwardCRD, err)
	}
	cfg, err := l.state.RESTConfig()
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := dc.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the PortForward CRD: %w", err)
	}
	// Wait until the API serves it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := dc.Resource(portForwardGVR).List(ctx, metav1.ListOptions{Limit: 1})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the PortForward CRD is not served: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (l *launch) createNodes(ctx context.Context) error {
	cs, err := l.state.Clientset()
	if err != nil {
		return err
	}
	for i := range l.cfg.Nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		res := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("32"),
			corev1.ResourceMemory: resource.MustParse("256Gi"),
			corev1.ResourcePods:   resource.MustParse("110"),
		}
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{NodeAnnotation: "fake"},
				Labels: map[string]string{
					"type": "kwok", "kubernetes.io/hostname": name,
					"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
				},
			},
			Status: corev1.NodeStatus{Capacity: res, Allocatable: res},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating node %s: %w", name, err)
		}
		l.state.Nodes = append(l.state.Nodes, name)
	}
	return nil
}

func (l *launch) nodesReady(ctx context.Context) error {
	cs, err := l.state.Clientset()
	if err != nil {
		return err
	}
	for _, name := range l.state.Nodes {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !NodeReady(n) {
			return fmt.Errorf("node %s is not Ready", name)
		}
	}
	return nil
}

// NodeReady reports whether n has condition Ready=True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// defaultServiceAccount checks that the controller-manager's service-account
// controller is working; without it no pod can be created.
func (l *launch) defaultServiceAccount(ctx context.Context) error {
	cs, err := l.state.Clientset()
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
	return err
}

func httpOK(ctx context.Context, u string) error {
	return get(ctx, http.DefaultClient, u)
}

// httpsOK checks a health endpoint of a component that serves a self-signed
// or harness-signed certificate; only reachability matters here.
func httpsOK(ctx context.Context, u string) error {
	return get(ctx, insecureClient, u)
}

func get(ctx context.Context, c *http.Client, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return nil
}

// redisPing speaks just enough RESP to check that the server answers.
func redisPing(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return errors.New("redis answered " + strings.TrimSpace(line))
	}
	return nil
}
