// Command kubectl-krm is the krm kubectl plugin: `kubectl krm get`, `diff
// verified`, `status` and `version`, answered by the krm agent's cache
// instead of the API server.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	// The auth-provider plugins kubectl has (oidc), for kubeconfigs that
	// use one: for the API server, and for an https --agent-url.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/klog/v2"

	"github.com/krm-project/krm/pkg/render"
)

func main() {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	// client-go reports a port-forward's closed connections through klog;
	// they are the plugin's own connections ending, not news for the user.
	klog.SetLogger(logr.Discard())
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	cmd := NewCmdKrm(streams)
	if err := cmd.ExecuteContext(ctx); err != nil {
		if err.Error() != "" {
			_ = render.PrintError(os.Stderr, err)
		}
		os.Exit(exitCode(err))
	}
}
