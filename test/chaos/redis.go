package chaos

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/krm-project/krm/test/cluster"
)

// redisServer is a redis-server of the scenario's own, without
// persistence: a restart comes back empty, as a Redis pod without a volume.
type redisServer struct {
	Addr string
	dir  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// redisSet is a scenario's Redis: one server, or a Redis Cluster of three
// masters each with one replica.
type redisSet struct {
	servers []*redisServer
	cluster bool
}

func startRedis(ctx context.Context, dir string, clustered bool) (*redisSet, error) {
	s := &redisSet{cluster: clustered}
	n := 1
	if clustered {
		n = 6
	}
	for i := range n {
		port, err := cluster.FreePort()
		if err != nil {
			return nil, err
		}
		d := filepath.Join(dir, strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
		srv := &redisServer{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: d,
			args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
				"--dir", d, "--daemonize", "no", "--loglevel", "warning"}}
		if clustered {
			srv.args = append(srv.args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
				// A replica takes over however long its master has been gone.
				"--cluster-replica-validity-factor", "0")
		}
		s.servers = append(s.servers, srv)
		if err := srv.start(); err != nil {
			s.stop()
			return nil, err
		}
	}
	if !clustered {
		return s, nil
	}
	args := []string{"--cluster", "create"}
	for _, srv := range s.servers {
		args = append(args, srv.Addr)
	}
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		s.stop()
		return nil, fmt.Errorf("redis-cli %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	if err := s.waitClusterOK(ctx, 30*time.Second); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// agentFlags are the agent's flags to reach this Redis.
func (s *redisSet) agentFlags() []string {
	if !s.cluster {
		return []string{"--redis-url", "redis://" + s.servers[0].Addr + "/0"}
	}
	var addrs []string
	for _, srv := range s.servers {
		addrs = append(addrs, srv.Addr)
	}
	return []string{"--redis-addrs", strings.Join(addrs, ",")}
}

func (s *redisSet) stop() {
	for _, srv := range s.servers {
		srv.kill()
	}
}

// waitClusterOK waits until every running node says cluster_state:ok.
func (s *redisSet) waitClusterOK(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, srv := range s.servers {
		if !srv.running() {
			continue
		}
		for {
			out, err := srv.command(ctx, "CLUSTER", "INFO")
			if err == nil && strings.Contains(out, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the Redis Cluster node %s is not ok after %s: %s %v", srv.Addr, timeout, out, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (r *redisServer) start() error {
	logFile, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command("redis-server", r.args...)
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server (the local cluster installs it): %w", err)
	}
	r.cmd, r.done = cmd, make(chan struct{})
	done := r.done
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := r.command(context.Background(), "PING")
		if err == nil && out == "PONG" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s does not answer PING: %q %v", r.Addr, out, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *redisServer) running() bool {
	if r.cmd == nil {
		return false
	}
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// kill kills it with SIGKILL and waits until it is gone.
func (r *redisServer) kill() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	r.cmd = nil
}

// command runs one command with redis-cli and returns its output.
func (r *redisServer) command(ctx context.Context, args ...string) (string, error) {
	host, port, _ := net.SplitHostPort(r.Addr)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...).Output()
	return strings.TrimSpace(string(out)), err
}

// scanKeys lists the keys matching pattern (one server).
func (r *redisServer) scanKeys(ctx context.Context, pattern string) ([]string, error) {
	host, port, _ := net.SplitHostPort(r.Addr)
	out, err := exec.CommandContext(ctx, "redis-cli", "-h", host, "-p", port, "--scan", "--pattern", pattern).Output()
	if err != nil {
		return nil, err
	}
	var keys []string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if k := strings.TrimSpace(sc.Text()); k != "" {
			keys = append(keys, k)
		}
	}
	return keys, nil
}
