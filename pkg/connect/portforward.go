package connect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// ErrPortForwardForbidden is returned when RBAC refuses pods/portforward.
var ErrPortForwardForbidden = errors.New("port-forward forbidden")

// PortForward forwards a free port on 127.0.0.1 to port podPort of the pod,
// the way kubectl port-forward does: WebSocket first, SPDY as the fallback.
// It returns the local port; the forward stops when ctx is done.
func PortForward(ctx context.Context, cfg *rest.Config, namespace, pod string, podPort int) (int, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward").URL()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return 0, err
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		return 0, err
	}
	dialer = portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesWithContext(ctx, dialer, []string{"127.0.0.1"}, []string{":" + strconv.Itoa(podPort)}, ready, io.Discard, io.Discard)
	if err != nil {
		return 0, err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		if err != nil && strings.Contains(strings.ToLower(err.Error()), "forbidden") {
			return 0, fmt.Errorf("%w: port-forward to pod %s/%s needs the RBAC permission create on pods/portforward in namespace %s: %v",
				ErrPortForwardForbidden, namespace, pod, namespace, err)
		}
		return 0, fmt.Errorf("port-forward to pod %s/%s port %d: %w", namespace, pod, podPort, err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil {
		return 0, err
	}
	return int(ports[0].Local), nil
}
