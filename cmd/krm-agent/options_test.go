package main

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/krm-project/krm/pkg/version"
)

func TestProbeNamespace(t *testing.T) {
	noFile := func(string) ([]byte, error) { return nil, fs.ErrNotExist }
	inPod := func(name string) ([]byte, error) {
		if name != namespaceFile {
			return nil, fs.ErrNotExist
		}
		return []byte("krm-system\n"), nil
	}
	env := func(v string) func(string) string {
		return func(name string) string {
			if name == podNamespaceEnv {
				return v
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name     string
		flag     string
		getenv   func(string) string
		readFile func(string) ([]byte, error)
		want     string
	}{
		{"flag first", "probes", env("from-env"), inPod, "probes"},
		{"then POD_NAMESPACE", "", env("from-env"), inPod, "from-env"},
		{"then the service account's namespace", "", env(""), inPod, "krm-system"},
		{"else default", "", env(""), noFile, "default"},
		{"an empty file is no namespace", "", env(""), func(string) ([]byte, error) { return []byte("\n"), nil }, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &Options{ProbeNamespace: tc.flag}
			if got := o.probeNamespace(tc.getenv, tc.readFile); got != tc.want {
				t.Errorf("probe namespace = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidateProbeInterval(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		err      string
	}{
		{0, ""},
		{time.Minute, ""},
		{100 * time.Millisecond, ""},
		{10 * time.Millisecond, "--probe-interval must be 0 (off) or at least 100ms"},
		{-time.Second, "--probe-interval must be 0 (off) or at least 100ms"},
	} {
		o := &Options{Resources: []string{"pods"}, VerifyInterval: time.Minute, Listen: "127.0.0.1:8080", Store: "memory",
			LogFormat: "text", LogLevel: "info", ProbeInterval: tc.interval}
		err := o.Validate()
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("--probe-interval %s: Validate() = %v, want no error", tc.interval, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("--probe-interval %s: Validate() = %v, want an error saying %q", tc.interval, err, tc.err)
		}
	}
}

func TestValidateWatchStallTimeout(t *testing.T) {
	for _, tc := range []struct {
		timeout time.Duration
		ok      bool
	}{{0, true}, {time.Second, true}, {150 * time.Second, true}, {500 * time.Millisecond, false}, {-time.Second, false}} {
		o := &Options{Resources: []string{"pods"}, VerifyInterval: time.Minute, Listen: "127.0.0.1:8080", Store: "memory",
			LogFormat: "text", LogLevel: "info", WatchStallTimeout: tc.timeout}
		err := o.Validate()
		if tc.ok != (err == nil) || (err != nil && !strings.Contains(err.Error(), "--watch-stall-timeout must be at least 1s")) {
			t.Errorf("--watch-stall-timeout %s: Validate() = %v, want ok=%v", tc.timeout, err, tc.ok)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-v"}} {
		cmd := NewCommand()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetArgs(args)
		// --version returns before RunE, which would load a kubeconfig.
		if err := cmd.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if want := "krm-agent " + version.Version + "\n"; out.String() != want {
			t.Errorf("%v printed %q, want %q", args, out.String(), want)
		}
	}
}
