package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/krm-project/krm/internal/secrets"
	"github.com/krm-project/krm/pkg/version"
)

// ensureSecretTimeout bounds one run: in a pod, kubelet restarts a failed
// initContainer with its back-off, so waiting longer here buys nothing.
const ensureSecretTimeout = 30 * time.Second

// EnsureSecretOptions are the flags of `krm-agent ensure-secret`.
type EnsureSecretOptions struct {
	Kubeconfig string
	Context    string
	Namespace  string
	Name       string
	Data       []string
	LogFormat  string
}

func newEnsureSecretCommand(o *EnsureSecretOptions) *cobra.Command {
	if o.LogFormat == "" {
		o.LogFormat = "text"
	}
	cmd := &cobra.Command{
		Use:   "ensure-secret --name NAME --data KEY=TEMPLATE...",
		Short: "Create a Secret with a generated password unless it exists (the install's initContainer)",
		Long: `ensure-secret creates the Secret NAME in --namespace, each --data key filled
from its template with "` + secrets.Placeholder + `" replaced by one new password:
` + fmt.Sprint(secrets.PasswordBytes) + ` bytes from crypto/rand as base64url. A Secret that exists already (from an
earlier start, a racing replica, or made by you) is left as it is, as long as
it has every key; otherwise the command fails and says which keys are
missing. The password is never printed, logged or put in an argument.

It needs create on secrets in the namespace, and get on secrets named NAME.`,
		Example: `  krm-agent ensure-secret --name krm-redis --data 'password={password}' --data 'redis.conf=requirepass {password}'`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig. Without it: the in-cluster config, then the default kubeconfig rules.")
	f.StringVar(&o.Context, "context", o.Context, "The kubeconfig context to use.")
	f.StringVarP(&o.Namespace, "namespace", "n", o.Namespace, "Namespace of the Secret. Default: the agent's own ($POD_NAMESPACE, then the service account's namespace file), else \"default\".")
	f.StringVar(&o.Name, "name", o.Name, "Name of the Secret.")
	f.StringArrayVar(&o.Data, "data", o.Data, fmt.Sprintf("KEY=TEMPLATE, repeated (at most %d): a key of the Secret and its value, where %s stands for the generated password.", secrets.MaxKeys, secrets.Placeholder))
	f.StringVar(&o.LogFormat, "log-format", o.LogFormat, "Log format: text or json.")
	return cmd
}

// spec checks the flags and returns the Secret they describe.
func (o *EnsureSecretOptions) spec(getenv func(string) string, readFile func(string) ([]byte, error)) (secrets.Spec, error) {
	if o.LogFormat != "text" && o.LogFormat != "json" {
		return secrets.Spec{}, fmt.Errorf("--log-format %q: use text or json", o.LogFormat)
	}
	if o.Name == "" {
		return secrets.Spec{}, fmt.Errorf("--name is empty: name the Secret to ensure")
	}
	tmpl, err := secrets.ParseData(o.Data)
	if err != nil {
		return secrets.Spec{}, fmt.Errorf("--data: %w", err)
	}
	s := secrets.Spec{Namespace: ownNamespace(o.Namespace, getenv, readFile), Name: o.Name, Templates: tmpl}
	if err := s.Validate(); err != nil {
		return secrets.Spec{}, err
	}
	return s, nil
}

// Run ensures the Secret and logs what it did, never the password.
func (o *EnsureSecretOptions) Run(ctx context.Context) error {
	s, err := o.spec(os.Getenv, os.ReadFile)
	if err != nil {
		return err
	}
	agentOpts := &Options{Kubeconfig: o.Kubeconfig, Context: o.Context, LogFormat: o.LogFormat, LogLevel: "info"}
	log := agentOpts.logger()
	cfg, _, err := agentOpts.restConfig()
	if err != nil {
		return err
	}
	cfg.UserAgent = "krm-agent/" + version.Version + " ensure-secret"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ensureSecretTimeout)
	defer cancel()
	res, err := secrets.Ensure(ctx, cs, s)
	if err != nil {
		return err
	}
	msg := "created the secret with a new password"
	if res == secrets.Kept {
		msg = "the secret exists with every key; left as it is"
	}
	log.LogAttrs(ctx, slog.LevelInfo, msg, slog.String("namespace", s.Namespace), slog.String("secret", s.Name), slog.Any("keys", s.Keys()))
	return nil
}
