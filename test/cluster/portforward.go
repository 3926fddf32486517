package cluster

import (
	"context"

	"github.com/krm-project/krm/pkg/connect"
)

// PortForward forwards a free port on 127.0.0.1 to port podPort of the pod
// with client-go, as the plugin does, and returns the local port; the
// forward stops when ctx is done.
func (s *State) PortForward(ctx context.Context, namespace, pod string, podPort int) (int, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return 0, err
	}
	return connect.PortForward(ctx, cfg, namespace, pod, podPort)
}
