// Package clustertest gives Go tests the local cluster: a TestMain that
// attaches to a running cluster (from KRM_CLUSTER_DIR, or the default
// directory) or starts one, and per-test namespaces.
//
//	func TestMain(m *testing.M) { clustertest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		c := clustertest.Get(t)           // skips under -short
//		ns := clustertest.Namespace(t, c) // deleted when the test ends
//		...
//	}
package clustertest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/krm-project/krm/test/cluster"
)

var (
	current  *cluster.State
	setupErr error
)

// startedMarker says the cluster in a directory was started by a test
// binary, so the last test binary to leave stops it. A cluster started by
// `make cluster-up` has no marker and is left running.
const startedMarker = "started-by-tests"

// Main runs m with the local cluster available to Get. Under -short it
// touches no cluster at all.
func Main(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	cfg := cluster.DefaultConfig()
	cfg.Log = os.Stderr
	release := attach(cfg)
	code := m.Run()
	release()
	os.Exit(code)
}

// attach finds or starts the cluster and registers this process as a user
// of it. Test binaries of several packages run in parallel, so this and
// release hold a lock across check-and-start and check-and-stop.
func attach(cfg cluster.Config) (release func()) {
	ctx := context.Background()
	unlock, err := lock(cfg)
	if err != nil {
		setupErr = err
		return func() {}
	}
	defer unlock()
	s, err := cluster.Load(cfg.Dir)
	if err == nil {
		err = s.Running(ctx)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "clustertest: no running cluster in %s (%v); starting one\n", cfg.Dir, err)
		if s, err = cluster.Up(ctx, cfg); err != nil {
			setupErr = fmt.Errorf("starting the local cluster: %w", err)
			return func() {}
		}
		if err := os.WriteFile(filepath.Join(cfg.Dir, startedMarker), nil, 0o644); err != nil {
			setupErr = err
		}
	}
	current = s
	users := filepath.Join(cfg.Dir, "users")
	me := filepath.Join(users, strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(users, 0o755); err == nil {
		_ = os.WriteFile(me, nil, 0o644)
	}
	return func() {
		unlock, err := lock(cfg)
		if err != nil {
			return
		}
		defer unlock()
		_ = os.Remove(me)
		if _, err := os.Stat(filepath.Join(cfg.Dir, startedMarker)); err != nil {
			return
		}
		entries, _ := os.ReadDir(users)
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err == nil && syscall.Kill(pid, 0) == nil {
				return // another test binary still uses it
			}
		}
		if err := cluster.Down(cfg); err != nil {
			fmt.Fprintf(os.Stderr, "clustertest: stopping the cluster: %v\n", err)
		}
	}
}

func lock(cfg cluster.Config) (func(), error) {
	if err := os.MkdirAll(cfg.Cache, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(cfg.Cache, "cluster.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", f.Name(), err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Get returns the cluster. It skips the test under -short and fails it when
// the package has no cluster (its TestMain must call Main).
func Get(t testing.TB) *cluster.State {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local cluster; skipped under -short")
	}
	if setupErr != nil {
		t.Fatalf("local cluster: %v", setupErr)
	}
	if current == nil {
		t.Fatal("no local cluster: the package's TestMain must call clustertest.Main")
	}
	return current
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace for this test, waits until pods can be
// created in it (its default ServiceAccount exists) and deletes it when the
// test ends.
func Namespace(t testing.TB, c *cluster.State) string {
	t.Helper()
	cs, err := c.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Trim(unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.Trim(base[:40], "-")
	}
	name := "t-" + base + "-" + rand.String(5)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("namespace %s has no default ServiceAccount after 30s: %v", name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// LockInstall makes the test the only one, across test binaries and
// worktrees sharing the cluster, that installs krm into krm-system until it
// ends: TestManifests and TestHelm each install and delete the namespace,
// the ClusterRole and their bindings, and would otherwise delete each
// other's. Call it before registering the test's own cleanups, so that the
// lock is released after them.
func LockInstall(t testing.TB, c *cluster.State) {
	t.Helper()
	path := filepath.Join(c.Dir, "krm-system.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			t.Fatalf("locking %s: %v", path, err)
		}
		select {
		case <-t.Context().Done():
			f.Close()
			t.Fatalf("waiting for %s: %v", path, t.Context().Err())
		case <-time.After(time.Second):
		}
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}
