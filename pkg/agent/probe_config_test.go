package agent

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/krm-project/krm/pkg/agent/probe"
	"github.com/krm-project/krm/pkg/delay"
)

func TestCompleteChecksTheProbe(t *testing.T) {
	rec, err := delay.NewRecorder(delay.RecorderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative interval", Config{ProbeInterval: -time.Second, ProbeNamespace: "krm", Delay: rec}, "probe interval must not be negative"},
		{"no recorder", Config{ProbeInterval: time.Second, ProbeNamespace: "krm"}, probe.ErrNeedsDelay.Error()},
		{"no namespace", Config{ProbeInterval: time.Second, Delay: rec}, "needs a namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.RESTConfig = &rest.Config{Host: "http://127.0.0.1:1"}
			tc.cfg.VerifyInterval = time.Minute
			_, err := tc.cfg.Complete()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Complete() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
