package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

const uiExample = `  # Serve the web view on a free local port and print its URL
  kubectl krm ui

  # On a fixed port, through an agent reached by URL
  kubectl krm ui --port 8002 --agent-url https://krm.example:8443`

// uiPath is where the agent serves the web view (pkg/ui.Prefix); the plugin
// does not link the agent's packages, so it names the path itself.
const uiPath = "/ui/"

// NewCmdUI builds `kubectl krm ui`: kubectl krm proxy, announcing the web
// view's URL. The agent serves the view's files; the proxy passes them and
// the API requests they make, with the user's credentials for an https
// --agent-url, as it passes every request.
func NewCmdUI(cf *genericclioptions.ConfigFlags, agent *AgentFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ProxyOptions{configFlags: cf, agent: agent, IOStreams: streams, port: 0, address: "127.0.0.1", serving: uiServing}
	cmd := &cobra.Command{
		Use:   "ui [--port=PORT] [--address=ADDRESS]",
		Short: "Serve the krm agent's web view on a local port and print its URL",
		Long: `Serve the krm agent's web view on a local address and print its URL: the
overview of every cached resource (live), the stream delay over time, the drift
ledger and each object's history.

It is kubectl krm proxy with the view's URL printed: the agent serves the
pages from its own binary (no CDN), and every request goes through a
port-forward to the agent pod, or to --agent-url, with your credentials for an
https one, so the view shows what the API lets you read. It runs until
interrupted.`,
		Example: uiExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.Complete(cmd, args); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().IntVarP(&o.port, "port", "p", o.port, "The port on which to serve the view. 0 picks a free port.")
	cmd.Flags().StringVar(&o.address, "address", o.address, "The IP address on which to serve on.")
	return cmd
}

// uiServing is the view's URL: the address it listens on, or localhost's
// for an unspecified one (0.0.0.0, ::), which a browser cannot open.
func uiServing(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return fmt.Sprintf("Serving the krm web view on %s%s (press Ctrl-C to stop)", addr, uiPath)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("Serving the krm web view at http://%s:%s%s (press Ctrl-C to stop)", host, port, uiPath)
}
