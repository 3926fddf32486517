package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

var insecureClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // health checks of local components only
}

// RESTConfig returns an admin client configuration for the cluster.
func (s *State) RESTConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", s.Kubeconfig, err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	return cfg, nil
}

// Clientset returns an admin clientset for the cluster.
func (s *State) Clientset() (*kubernetes.Clientset, error) {
	cfg, err := s.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

func (l *launch) writeKubeconfig() error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["krm-local"] = &clientcmdapi.Cluster{Server: l.state.Server, CertificateAuthorityData: l.pki.caPEM}
	kc.AuthInfos["krm-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: l.pki.adminCertPEM, ClientKeyData: l.pki.adminKeyPEM}
	kc.Contexts["krm-local"] = &clientcmdapi.Context{Cluster: "krm-local", AuthInfo: "krm-admin", Namespace: "default"}
	kc.CurrentContext = "krm-local"
	return clientcmd.WriteToFile(*kc, l.state.Kubeconfig)
}

// ForwardPodPort makes port podPort of the pod namespace/name reach
// 127.0.0.1:localPort, by creating a kwok PortForward object named like the
// pod. kubectl port-forward and client-go then reach the local process as if
// it ran in the pod. It replaces any earlier mapping for that pod.
func (s *State) ForwardPodPort(ctx context.Context, namespace, name string, podPort, localPort int) error {
	cfg, err := s.RESTConfig()
	if err != nil {
		return err
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	pf := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1",
		"kind":       "PortForward",
		"metadata":   map[string]any{"name": name, "namespace": namespace},
		"spec": map[string]any{
			"forwards": []any{map[string]any{
				"ports":  []any{int64(podPort)},
				"target": map[string]any{"address": "127.0.0.1", "port": int64(localPort)},
			}},
		},
	}}
	res := dc.Resource(portForwardGVR).Namespace(namespace)
	_, err = res.Create(ctx, pf, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		var cur *unstructured.Unstructured
		if cur, err = res.Get(ctx, name, metav1.GetOptions{}); err == nil {
			pf.SetResourceVersion(cur.GetResourceVersion())
			_, err = res.Update(ctx, pf, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("mapping pod %s/%s port %d to 127.0.0.1:%d: %w", namespace, name, podPort, localPort, err)
	}
	return nil
}

// EtcdURL is the client URL of the cluster's etcd.
func (s *State) EtcdURL() string { return "http://" + hostPort(s.Ports["etcd"]) }
