package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/krm-project/krm/pkg/api"
	"github.com/krm-project/krm/pkg/store"
)

// discoveryStore is a store that keeps what discovery resolved (Redis),
// so the agent can start, and serve its stored frames, while kube-apiserver
// does not answer.
type discoveryStore interface {
	RememberDiscovery(ctx context.Context, keyCluster string, b []byte) error
	RememberedDiscovery(ctx context.Context, keyCluster string) ([]byte, error)
}

// storedDiscovery is what is kept: the cluster's version and each resolved
// resource, for the resource names the agent was started with.
type storedDiscovery struct {
	Names     []string                 `json:"names"`
	Version   *version.Info            `json:"version"`
	Resources []storedResolvedResource `json:"resources"`
}

type storedResolvedResource struct {
	Info api.ResourceInfo            `json:"info"`
	GVR  schema.GroupVersionResource `json:"gvr"`
}

// rememberDiscovery keeps res and v in s when s can, logging a failure:
// the agent works without it, it only cannot start offline next time.
func rememberDiscovery(s store.Store, keyCluster string, names []string, v *version.Info, res []resolved, log *slog.Logger) {
	ds, ok := s.(discoveryStore)
	if !ok {
		return
	}
	d := storedDiscovery{Names: names, Version: v}
	for _, r := range res {
		d.Resources = append(d.Resources, storedResolvedResource{Info: r.info, GVR: r.gvr})
	}
	b, err := json.Marshal(d)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), discoveryTimeout)
		defer cancel()
		err = ds.RememberDiscovery(ctx, keyCluster, b)
	}
	if err != nil {
		log.Warn("could not keep the resources discovery resolved in the store; a restart while the API server is down will not serve stored frames", "err", err)
	}
}

// rememberedDiscovery returns what the last run kept for the same resource
// names, or an error saying why there is none.
func rememberedDiscovery(s store.Store, keyCluster string, names []string) (*version.Info, []resolved, error) {
	ds, ok := s.(discoveryStore)
	if !ok {
		return nil, nil, errors.New("the store keeps no discovery (only --store=redis does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), discoveryTimeout)
	defer cancel()
	b, err := ds.RememberedDiscovery(ctx, keyCluster)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil, fmt.Errorf("the store holds no discovery for cluster %s: no earlier run with it", keyCluster)
	}
	if err != nil {
		return nil, nil, err
	}
	var d storedDiscovery
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, nil, fmt.Errorf("the stored discovery of cluster %s does not read back: %w", keyCluster, err)
	}
	if !slices.Equal(d.Names, names) {
		return nil, nil, fmt.Errorf("the stored discovery is for --resources %v, not %v", d.Names, names)
	}
	if d.Version == nil || len(d.Resources) == 0 {
		return nil, nil, fmt.Errorf("the stored discovery of cluster %s is incomplete", keyCluster)
	}
	res := make([]resolved, 0, len(d.Resources))
	for _, r := range d.Resources {
		res = append(res, resolved{info: r.Info, gvr: r.GVR})
	}
	return d.Version, res, nil
}

// discoveryTimeout bounds reading or writing the stored discovery.
const discoveryTimeout = 5 * time.Second
