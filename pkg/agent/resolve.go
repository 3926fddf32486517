package agent

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"

	"github.com/krm-project/krm/pkg/api"
)

// DefaultResources are watched when --resources is not given.
var DefaultResources = api.DefaultResources

// resolved is a watched resource: its names and where to reach it.
type resolved struct {
	info api.ResourceInfo
	gvr  schema.GroupVersionResource
}

// candidate is one listable, watchable resource discovery knows.
type candidate struct {
	gv  schema.GroupVersion
	res metav1.APIResource
}

// resolveResources maps the names the user gave (plural, singular, short
// name, kind, or plural.group) to resources, through discovery. Each group's
// preferred version is used. An unknown name is an error listing close
// matches.
func resolveResources(dc discovery.DiscoveryInterface, names []string) ([]resolved, error) {
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("discovering the API server's resources: %w", err)
	}
	preferred, err := preferredVersions(dc)
	if err != nil {
		return nil, err
	}
	var cands []candidate
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil || preferred[gv.Group] != gv.Version {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") {
				continue
			}
			cands = append(cands, candidate{gv: gv, res: r})
		}
	}
	// The core group first, then the order discovery gave, as kubectl does.
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].gv.Group == "" && cands[j].gv.Group != "" })
	plurals := map[string]int{}
	for _, c := range cands {
		plurals[c.res.Name]++
	}

	var out []resolved
	seen := map[schema.GroupVersionResource]bool{}
	for _, raw := range names {
		name := strings.ToLower(strings.TrimSpace(raw))
		if name == "" {
			continue
		}
		c, ok := match(cands, name)
		if !ok {
			return nil, unknownResource(cands, raw)
		}
		gvr := c.gv.WithResource(c.res.Name)
		if seen[gvr] {
			continue
		}
		seen[gvr] = true
		key := c.res.Name
		if c.gv.Group != "" && plurals[c.res.Name] > 1 {
			key = c.res.Name + "." + c.gv.Group
		}
		out = append(out, resolved{gvr: gvr, info: api.ResourceInfo{
			Name: key, Group: c.gv.Group, Version: c.gv.Version, Resource: c.res.Name,
			Kind: c.res.Kind, Namespaced: c.res.Namespaced, ShortNames: c.res.ShortNames, Categories: c.res.Categories,
			SelectableFields: selectableFields[c.res.Kind],
		}})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no resources to watch: --resources is empty")
	}
	return out, nil
}

func preferredVersions(dc discovery.DiscoveryInterface) (map[string]string, error) {
	groups, err := dc.ServerGroups()
	if err != nil {
		return nil, fmt.Errorf("discovering API groups: %w", err)
	}
	pref := map[string]string{}
	for _, g := range groups.Groups {
		pref[g.Name] = g.PreferredVersion.Version
	}
	return pref, nil
}

func match(cands []candidate, name string) (candidate, bool) {
	resource, group, _ := strings.Cut(name, ".")
	for _, c := range cands {
		if group != "" && c.gv.Group != group {
			continue
		}
		if c.res.Name == resource || strings.ToLower(c.res.SingularName) == resource ||
			strings.ToLower(c.res.Kind) == resource || slices.Contains(c.res.ShortNames, resource) {
			return c, true
		}
	}
	return candidate{}, false
}

// unknownResource says a name matched nothing and lists the closest names.
func unknownResource(cands []candidate, name string) error {
	type scored struct {
		name string
		d    int
	}
	var close []scored
	seen := map[string]bool{}
	lower := strings.ToLower(name)
	for _, c := range cands {
		full := c.res.Name
		if c.gv.Group != "" {
			full += "." + c.gv.Group
		}
		for _, n := range append([]string{c.res.Name, full}, c.res.ShortNames...) {
			d := levenshtein(lower, n)
			// A short name like "no" must not match every word it starts.
			prefix := strings.HasPrefix(n, lower) || (len(n) >= 3 && strings.HasPrefix(lower, n))
			if (d <= 2 || prefix) && !seen[full] {
				seen[full] = true
				close = append(close, scored{full, d})
			}
		}
	}
	sort.Slice(close, func(i, j int) bool {
		if close[i].d != close[j].d {
			return close[i].d < close[j].d
		}
		return close[i].name < close[j].name
	})
	if len(close) == 0 {
		return fmt.Errorf("the server doesn't have a resource type %q (see kubectl api-resources)", name)
	}
	var names []string
	for i := 0; i < len(close) && i < 5; i++ {
		names = append(names, close[i].name)
	}
	return fmt.Errorf("the server doesn't have a resource type %q; did you mean %s?", name, strings.Join(names, ", "))
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
