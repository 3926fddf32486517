package cluster

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Kill kills the cluster's process name (such as "kube-apiserver" or
// "redis") with SIGKILL, as a crash would, and waits until it is gone.
// StartAgain starts it again. Only the fault suite should do this, on a
// cluster of its own.
func (s *State) Kill(name string) error {
	p, err := s.process(name)
	if err != nil {
		return err
	}
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s (pid %d): %w", p.Name, p.PID, err)
	}
	for range 200 {
		if !p.Alive() {
			return nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.PID)
}

// StartAgain starts the cluster's process name, killed before, with its
// binary and arguments of the first start, records its new PID and waits
// until it answers: kube-apiserver its /readyz, Redis PING.
func (s *State) StartAgain(ctx context.Context, name string) error {
	old, err := s.process(name)
	if err != nil {
		return err
	}
	if old.Alive() {
		return fmt.Errorf("%s (pid %d) is still running", name, old.PID)
	}
	p, err := start(s.Dir, name, old.Binary, old.Args, nil)
	if err != nil {
		return err
	}
	for i, q := range s.Processes {
		if q == old {
			s.Processes[i] = p
		}
	}
	if err := s.save(); err != nil {
		return err
	}
	check := func(ctx context.Context) error { return nil }
	switch name {
	case "kube-apiserver":
		check = func(ctx context.Context) error {
			cs, err := s.Clientset()
			if err != nil {
				return err
			}
			_, err = cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			return err
		}
	case "redis":
		check = func(ctx context.Context) error { return redisPing(ctx, hostPort(s.Ports["redis"])) }
	}
	l := &launch{cfg: Config{Dir: s.Dir}}
	return l.wait(ctx, p, 60*time.Second, check)
}

func (s *State) process(name string) (*Process, error) {
	for _, p := range s.Processes {
		if p.Name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("the cluster in %s has no process %q", s.Dir, name)
}
