package main

import (
	"io/fs"
	"strings"
	"testing"
	"time"
)

func defaultLeader() LeaderOptions {
	return LeaderOptions{Enabled: true, LeaseName: "krm-agent", LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
}

func TestValidateLeaderElect(t *testing.T) {
	for _, tc := range []struct {
		name   string
		store  string
		change func(*LeaderOptions)
		err    string
	}{
		{"off", "memory", func(l *LeaderOptions) { l.Enabled = false }, ""},
		{"defaults on redis", "redis", func(*LeaderOptions) {}, ""},
		{"memory cannot be shared", "memory", func(*LeaderOptions) {}, "--leader-elect needs --store=redis"},
		{"no lease name", "redis", func(l *LeaderOptions) { l.LeaseName = "" }, "--leader-elect-lease-name is empty"},
		{"renew past the lease", "redis", func(l *LeaderOptions) { l.RenewDeadline = 20 * time.Second }, "must be longer than --leader-elect-renew-deadline"},
		{"retry past the renew deadline", "redis", func(l *LeaderOptions) { l.RetryPeriod = 9 * time.Second }, "must be longer than 1.2 × --leader-elect-retry-period"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r RedisOptions
			if tc.store == "redis" {
				r.URL = "redis://127.0.0.1:6379/0"
			}
			o := validOptions(tc.store, r)
			o.Leader = defaultLeader()
			tc.change(&o.Leader)
			err := o.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Validate = %v, want an error with %q", err, tc.err)
			}
		})
	}
}

func TestLeaderElectionConfig(t *testing.T) {
	l := defaultLeader()
	env := func(name string) string {
		if name == podNamespaceEnv {
			return "krm-system"
		}
		return ""
	}
	noFile := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	a, b := l.config(env, noFile), l.config(env, noFile)
	if a.Namespace != "krm-system" || a.Name != "krm-agent" || !a.ReleaseOnCancel || a.LeaseDuration != 15*time.Second {
		t.Errorf("config = %+v", *a)
	}
	if a.Identity == b.Identity {
		t.Errorf("two replicas share identity %q", a.Identity)
	}
	l.Namespace = "elsewhere"
	if got := l.config(env, noFile).Namespace; got != "elsewhere" {
		t.Errorf("--leader-elect-namespace elsewhere gave %q", got)
	}
	l.Enabled = false
	if got := l.config(env, noFile); got != nil {
		t.Errorf("leader election off gave %+v", *got)
	}
}
