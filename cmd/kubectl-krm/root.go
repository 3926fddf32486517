package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/krm-project/krm/pkg/connect"
)

// AgentFlags say how to reach the agent; every command that reads the cache
// has them.
type AgentFlags struct {
	URL       string
	Namespace string
	Selector  string
	Port      int
	// CAFile and InsecureSkipTLSVerify verify an https --agent-url.
	CAFile                string
	InsecureSkipTLSVerify bool
}

func (f *AgentFlags) addFlags(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.URL, "agent-url", f.URL, "The agent's base URL (e.g. http://127.0.0.1:8080). Skips finding the agent pod and the port-forward. An https URL (the agent's --secure-listen) is sent the kubeconfig's credentials: a bearer token, --token, or an exec or auth-provider plugin's token; an http URL none.")
	fl.StringVar(&f.Namespace, "agent-namespace", connect.DefaultNamespace, "Namespace of the krm agent pod.")
	fl.StringVar(&f.Selector, "agent-selector", connect.DefaultSelector, "Label selector of the krm agent pod.")
	fl.IntVar(&f.Port, "agent-port", connect.DefaultPort, "Port the krm agent listens on inside its pod.")
	fl.StringVar(&f.CAFile, "agent-certificate-authority", f.CAFile, "Path to a cert file for the certificate authority that signed the certificate of an https --agent-url. Default: the system's roots.")
	fl.BoolVar(&f.InsecureSkipTLSVerify, "agent-insecure-skip-tls-verify", f.InsecureSkipTLSVerify, "If true, the certificate of an https --agent-url will not be checked for validity. This will make your HTTPS connections insecure.")
	_ = cmd.MarkPersistentFlagFilename("agent-certificate-authority")
}

// options are the flags as connect.Options.
func (f *AgentFlags) options() connect.Options {
	return connect.Options{
		URL: f.URL, Namespace: f.Namespace, Selector: f.Selector, Port: f.Port,
		CAFile: f.CAFile, InsecureSkipTLSVerify: f.InsecureSkipTLSVerify,
	}
}

// connect reaches the agent, through a port-forward that lasts until ctx is
// done, or at --agent-url.
func (f *AgentFlags) connect(ctx context.Context, cf *genericclioptions.ConfigFlags) (*connect.Connection, error) {
	return f.connectWith(ctx, cf, f.options())
}

// connectWith is connect with o for the flags. The kubeconfig is loaded to
// find the agent pod, or for the credentials an https --agent-url is sent;
// an http one needs none.
func (f *AgentFlags) connectWith(ctx context.Context, cf *genericclioptions.ConfigFlags, o connect.Options) (*connect.Connection, error) {
	if o.URL != "" && !strings.HasPrefix(strings.ToLower(o.URL), "https://") {
		return connect.Connect(ctx, nil, o)
	}
	cfg, err := cf.ToRESTConfig()
	switch {
	case err != nil && o.URL != "":
		return nil, fmt.Errorf("loading the kubeconfig for the credentials to send to --agent-url %s: %w", o.URL, err)
	case err != nil:
		return nil, fmt.Errorf("loading the kubeconfig to find the krm agent: %w", err)
	}
	if o.URL != "" && cf.BearerToken != nil && *cf.BearerToken != "" && cfg.BearerToken == "" {
		// clientcmd leaves the user's credentials out when the API
		// server's URL is http, as it is by default without a kubeconfig;
		// the agent's is https, and --token is meant for it.
		cfg.BearerToken, cfg.BearerTokenFile = *cf.BearerToken, ""
	}
	return connect.Connect(ctx, cfg, o)
}

// NewCmdKrm builds `kubectl krm` and its subcommands.
func NewCmdKrm(streams genericiooptions.IOStreams) *cobra.Command {
	configFlags := genericclioptions.NewConfigFlags(true)
	agent := &AgentFlags{}
	cmd := &cobra.Command{
		// The executable's name, so that completion scripts call it; help
		// shows the name users type.
		Use:         "kubectl-krm",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl krm"},
		Short:       "Read cluster state from the krm cache instead of the API server",
		Long: `krm answers reads from the krm agent's cache, so the API server sees one watch
and one periodic LIST per resource however many readers there are.

The plugin finds the agent pod (--agent-namespace, --agent-selector) and
port-forwards to it, or talks to --agent-url.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	configFlags.AddFlags(cmd.PersistentFlags())
	agent.addFlags(cmd)
	cmd.AddCommand(
		NewCmdGet(configFlags, agent, streams),
		NewCmdDiff(configFlags, agent, streams),
		NewCmdHistory(configFlags, agent, streams),
		NewCmdStatus(configFlags, agent, streams),
		NewCmdDelay(configFlags, agent, streams),
		NewCmdProxy(configFlags, agent, streams),
		NewCmdUI(configFlags, agent, streams),
		NewCmdVersion(configFlags, agent, streams),
	)
	return cmd
}

// exitError carries an exit code other than 1, as diff's "differences found".
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
