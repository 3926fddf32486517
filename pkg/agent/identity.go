package agent

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// IdentityNamespace is the namespace whose UID identifies a cluster. Every
// cluster has it, nobody deletes it, and a rebuilt cluster (or one whose
// etcd was replaced) gets a new one, whatever the cluster is named.
const IdentityNamespace = "kube-system"

// ClusterUID returns the UID of the cluster's kube-system namespace, which
// Config.ClusterUID wants. It needs get on namespaces/kube-system.
func ClusterUID(ctx context.Context, cfg *rest.Config) (string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, IdentityNamespace, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading namespace %s for the cluster's identity: %w", IdentityNamespace, err)
	}
	if ns.UID == "" {
		return "", fmt.Errorf("namespace %s has no UID", IdentityNamespace)
	}
	return string(ns.UID), nil
}
