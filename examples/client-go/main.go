// Command client-go reads a cluster through krm with nothing but client-go:
// a typed LIST of deployments and a shared informer on pods, pointed at
// `kubectl krm proxy` (or straight at an agent) instead of kube-apiserver.
//
//	kubectl krm proxy &
//	go run ./examples/client-go --server http://127.0.0.1:8001 --for 30s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

func main() {
	server := flag.String("server", "http://127.0.0.1:8001", "krm's Kubernetes API: kubectl krm proxy's address, or the agent's")
	namespace := flag.String("namespace", "", "namespace to read (default: all)")
	runFor := flag.Duration("for", 10*time.Second, "how long to follow pod changes")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, &rest.Config{Host: *server}, *namespace, *runFor); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg *rest.Config, namespace string, runFor time.Duration) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deploys, err := cs.AppsV1().Deployments(namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing deployments through krm at %s (is `kubectl krm proxy` running?): %w", cfg.Host, err)
	}
	fmt.Printf("%d deployments at resourceVersion %s\n", len(deploys.Items), deploys.ResourceVersion)
	for _, d := range deploys.Items {
		fmt.Printf("  %s/%s replicas=%d ready=%d\n", d.Namespace, d.Name, d.Status.Replicas, d.Status.ReadyReplicas)
	}

	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(namespace))
	pods := factory.Core().V1().Pods().Informer()
	_, err = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			p := obj.(*corev1.Pod)
			fmt.Printf("ADDED    %s/%s %s\n", p.Namespace, p.Name, p.Status.Phase)
		},
		UpdateFunc: func(_, obj any) {
			p := obj.(*corev1.Pod)
			fmt.Printf("MODIFIED %s/%s %s\n", p.Namespace, p.Name, p.Status.Phase)
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				fmt.Printf("DELETED  %s/%s\n", p.Namespace, p.Name)
			}
		},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, runFor)
	defer cancel()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced) {
		return fmt.Errorf("the pod informer did not sync from %s within %s", cfg.Host, runFor)
	}
	fmt.Printf("informer synced: %d pods; following changes for %s\n", len(pods.GetStore().ListKeys()), runFor)
	<-ctx.Done()
	return nil
}
