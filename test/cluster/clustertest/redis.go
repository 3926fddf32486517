package clustertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krm-project/krm/test/cluster"
)

// RedisServer is a redis-server of one test's own, on a free port of
// 127.0.0.1, for tests that kill it or need a topology of their own. The
// local cluster's shared Redis is never touched. It is killed when the test
// ends.
type RedisServer struct {
	Addr string
	Dir  string
	// password is what the server requires (requirepass), if anything.
	password string
	t        testing.TB
	args     []string
	cmd      *exec.Cmd
	done     chan struct{}
}

// StartRedis starts a redis-server without persistence: a restart comes
// back empty, as a Redis pod without a volume does. args are appended to its
// command line.
func StartRedis(t testing.TB, args ...string) *RedisServer {
	t.Helper()
	port := freePort(t)
	dir := t.TempDir()
	r := &RedisServer{
		Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Dir:  dir,
		t:    t,
		args: append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--loglevel", "warning"}, args...),
	}
	t.Cleanup(r.Kill)
	r.Start()
	return r
}

// URL is the server's redis:// URL, database 0.
func (r *RedisServer) URL() string { return "redis://" + r.Addr + "/0" }

// Start starts the server (again, after Kill) and waits until it answers.
func (r *RedisServer) Start() {
	r.t.Helper()
	r.startArgs(r.args...)
	if err := waitRedis(r.Addr, r.password, 10*time.Second); err != nil {
		r.t.Fatalf("redis-server on %s: %v\n%s", r.Addr, err, r.log())
	}
}

func (r *RedisServer) startArgs(args ...string) {
	r.t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		r.t.Fatalf("redis-server: %v (the local cluster installs it)", err)
	}
	logFile, err := os.OpenFile(filepath.Join(r.Dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = r.Dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so a ^C of the test run does not race the
	// test's own kill.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	done := r.done
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
}

// Kill kills the server with SIGKILL, as a crash would, and waits until it
// is gone. Killing a stopped server does nothing.
func (r *RedisServer) Kill() {
	if r.cmd == nil {
		return
	}
	select {
	case <-r.done:
	default:
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
	}
	r.cmd = nil
}

func (r *RedisServer) log() string {
	data, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
	return string(data)
}

func freePort(t testing.TB) int {
	t.Helper()
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// waitRedis waits until the server at addr answers PING, after AUTH
// password unless it is empty.
func waitRedis(addr, password string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := redisCommandAuth(addr, password, "PING", "+PONG")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redisCommand sends one inline command and checks the first line of the
// answer starts with want.
func redisCommand(addr, command, want string) error {
	return redisCommandAuth(addr, "", command, want)
}

// redisCommandAuth is redisCommand after AUTH password, unless it is empty.
func redisCommandAuth(addr, password, command, want string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	r := bufio.NewReader(conn)
	if password != "" {
		if _, err := conn.Write([]byte("AUTH " + password + "\r\n")); err != nil {
			return err
		}
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("AUTH: redis answered %q (%v)", strings.TrimSpace(line), err)
		}
	}
	if _, err := conn.Write([]byte(command + "\r\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(strings.TrimSpace(line), want) {
		return errors.New(command + ": redis answered " + strings.TrimSpace(line))
	}
	return nil
}

// RedisCluster is a Redis Cluster of three masters, no replicas, of one
// test's own.
type RedisCluster struct {
	Nodes []*RedisServer
}

// Addrs are the nodes' addresses, the seeds a cluster client needs.
func (c *RedisCluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr)
	}
	return out
}

// StartRedisCluster starts three cluster-enabled redis-servers, joins them
// with redis-cli --cluster create and waits until the cluster is ok.
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	return startRedisCluster(t, 0)
}

// StartRedisClusterWithReplicas is StartRedisCluster with a replica for
// each master (six nodes), for tests of a failover: a replica takes over
// as soon as its master is taken for failed, however long ago it last
// heard from it.
func StartRedisClusterWithReplicas(t testing.TB) *RedisCluster {
	t.Helper()
	return startRedisCluster(t, 1)
}

func startRedisCluster(t testing.TB, replicas int) *RedisCluster {
	t.Helper()
	c := &RedisCluster{}
	for range 3 * (1 + replicas) {
		c.Nodes = append(c.Nodes, StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000", "--cluster-replica-validity-factor", "0"))
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli: %v", err)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	c.WaitOK(t, 30*time.Second)
	return c
}

// WaitOK waits until every node that runs says cluster_state:ok.
func (c *RedisCluster) WaitOK(t testing.TB, timeout time.Duration) {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli: %v", err)
	}
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue // killed
		}
		for {
			out, err := exec.Command(cli, "-h", "127.0.0.1", "-p", portOf(n.Addr), "cluster", "info").Output()
			if err == nil && strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the Redis Cluster on %v is not ok after %s: %s %v", c.Addrs(), timeout, out, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// RedisSentinel is a master, a replica and one Sentinel watching them, of
// one test's own.
type RedisSentinel struct {
	Master, Replica, Sentinel *RedisServer
	// MasterName is what the Sentinel calls the master.
	MasterName string
}

// StartRedisSentinel starts a master, a replica of it and a Sentinel that
// monitors the master as "krm", and waits until the Sentinel knows both.
// conf lines are added to the Sentinel's configuration, such as
// "requirepass <password>".
func StartRedisSentinel(t testing.TB, conf ...string) *RedisSentinel {
	t.Helper()
	s := &RedisSentinel{MasterName: "krm"}
	s.Master = StartRedis(t)
	s.Replica = StartRedis(t, "--replicaof", "127.0.0.1", portOf(s.Master.Addr))
	port := freePort(t)
	dir := t.TempDir()
	confFile := filepath.Join(dir, "sentinel.conf")
	config := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %s 1\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\n",
		port, dir, s.MasterName, portOf(s.Master.Addr), s.MasterName, s.MasterName)
	for _, line := range conf {
		config += line + "\n"
	}
	if err := os.WriteFile(confFile, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	s.Sentinel = &RedisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Dir: dir, t: t, args: []string{confFile, "--sentinel"}}
	for _, line := range conf {
		if p, ok := strings.CutPrefix(line, "requirepass "); ok {
			s.Sentinel.password = p
		}
	}
	t.Cleanup(s.Sentinel.Kill)
	s.Sentinel.Start()
	deadline := time.Now().Add(30 * time.Second)
	for redisCommandAuth(s.Sentinel.Addr, s.Sentinel.password, "SENTINEL replicas "+s.MasterName, "*1") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the Sentinel on %s does not know the replica after 30s:\n%s", s.Sentinel.Addr, s.Sentinel.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}
