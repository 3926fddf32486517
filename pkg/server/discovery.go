package server

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/krm-project/krm/pkg/api"
	krmv1alpha1 "github.com/krm-project/krm/pkg/apis/krm/v1alpha1"
)

// readVerbs are the only verbs krm serves, and all discovery lists.
var readVerbs = metav1.Verbs{"get", "list", "watch"}

// aggregatedContentType is aggregated discovery's media type, which kubectl
// and client-go ask for first.
const aggregatedContentType = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	v := s.opts.ClusterVersion
	if v == nil {
		v = &version.Info{}
	}
	s.writeJSON(w, v)
}

// groupVersions is every cached resource by group, then version, in the
// order the backend lists them; the core group is "".
type groupVersions struct {
	order []string
	by    map[string]map[string][]api.ResourceInfo
	vers  map[string][]string
}

func (s *Server) discover() groupVersions {
	g := groupVersions{by: map[string]map[string][]api.ResourceInfo{}, vers: map[string][]string{}}
	var infos []api.ResourceInfo
	for _, st := range s.backend.Resources().Resources {
		infos = append(infos, st.ResourceInfo)
	}
	for _, info := range append(infos, krmKinds...) {
		if g.by[info.Group] == nil {
			g.by[info.Group] = map[string][]api.ResourceInfo{}
			g.order = append(g.order, info.Group)
		}
		if g.by[info.Group][info.Version] == nil {
			g.vers[info.Group] = append(g.vers[info.Group], info.Version)
		}
		g.by[info.Group][info.Version] = append(g.by[info.Group][info.Version], info)
	}
	return g
}

func apiResource(info api.ResourceInfo) metav1.APIResource {
	return metav1.APIResource{
		Name:         info.Resource,
		SingularName: strings.ToLower(info.Kind),
		Namespaced:   info.Namespaced,
		Kind:         info.Kind,
		Verbs:        verbsOf(info),
		ShortNames:   info.ShortNames,
		Categories:   info.Categories,
	}
}

// verbsOf is what a resource can be asked: of krm.io's own objects only
// resourcestatuses are watched.
func verbsOf(info api.ResourceInfo) metav1.Verbs {
	if info.Group == krmv1alpha1.GroupName {
		if info.Resource == krmv1alpha1.ResourceResourceStatuses {
			return krmWatchVerbs
		}
		return krmVerbs
	}
	return readVerbs
}

// wantsAggregated reports whether the client asks for aggregated discovery
// (apidiscovery.k8s.io/v2) before the legacy documents.
func wantsAggregated(r *http.Request) bool {
	for _, mt := range parseAccept(r.Header.Values("Accept")) {
		if mt.params["as"] == "APIGroupDiscoveryList" && mt.params["g"] == "apidiscovery.k8s.io" && mt.params["v"] == "v2" {
			return true
		}
		if mt.params["as"] == "" && (mt.typ == "application/json" || mt.typ == "*/*") {
			return false
		}
	}
	return false
}

// coreGroups answers /api.
func (s *Server) coreGroups(w http.ResponseWriter, r *http.Request) {
	if wantsAggregated(r) {
		s.writeAggregated(w, s.aggregated(true))
		return
	}
	s.writeJSON(w, &metav1.APIVersions{
		TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
		Versions: []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
			{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host},
		},
	})
}

// groups answers /apis.
func (s *Server) groups(w http.ResponseWriter, r *http.Request) {
	if wantsAggregated(r) {
		s.writeAggregated(w, s.aggregated(false))
		return
	}
	gv := s.discover()
	list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{}}
	for _, g := range gv.order {
		if g == "" {
			continue
		}
		list.Groups = append(list.Groups, apiGroup(g, gv.vers[g]))
	}
	s.writeJSON(w, list)
}

func apiGroup(group string, versions []string) metav1.APIGroup {
	g := metav1.APIGroup{Name: group}
	for _, v := range versions {
		g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: group + "/" + v, Version: v})
	}
	g.PreferredVersion = g.Versions[0]
	return g
}

// group answers /apis/{group}.
func (s *Server) group(w http.ResponseWriter, group string) {
	gv := s.discover()
	if _, ok := gv.by[group]; !ok {
		s.writeStatus(w, notFound("/apis/"+group))
		return
	}
	g := apiGroup(group, gv.vers[group])
	g.TypeMeta = metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}
	s.writeJSON(w, &g)
}

// resourceList answers /api/v1 and /apis/{group}/{version}.
func (s *Server) resourceList(w http.ResponseWriter, group, ver string) {
	gv := s.discover()
	infos, ok := gv.by[group][ver]
	if !ok && !(group == "" && ver == "v1") {
		s.writeStatus(w, notFound(groupVersionPath(group, ver)))
		return
	}
	list := &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: metav1.GroupVersion{Group: group, Version: ver}.String(),
		APIResources: []metav1.APIResource{},
	}
	for _, info := range infos {
		list.APIResources = append(list.APIResources, apiResource(info))
	}
	s.writeJSON(w, list)
}

func groupVersionPath(group, ver string) string {
	if group == "" {
		return "/api/" + ver
	}
	return "/apis/" + group + "/" + ver
}

// aggregated builds aggregated discovery for the core group (/api) or the
// others (/apis).
func (s *Server) aggregated(core bool) *apidiscoveryv2.APIGroupDiscoveryList {
	gv := s.discover()
	list := &apidiscoveryv2.APIGroupDiscoveryList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"},
		Items:    []apidiscoveryv2.APIGroupDiscovery{},
	}
	groups := gv.order
	if core && !slices.Contains(groups, "") {
		groups = []string{""}
	}
	for _, g := range groups {
		if (g == "") != core {
			continue
		}
		d := apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: g}}
		vers := gv.vers[g]
		if core && len(vers) == 0 {
			vers = []string{"v1"}
		}
		for _, v := range vers {
			vd := apidiscoveryv2.APIVersionDiscovery{Version: v, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent, Resources: []apidiscoveryv2.APIResourceDiscovery{}}
			for _, info := range gv.by[g][v] {
				scope := apidiscoveryv2.ScopeCluster
				if info.Namespaced {
					scope = apidiscoveryv2.ScopeNamespace
				}
				vd.Resources = append(vd.Resources, apidiscoveryv2.APIResourceDiscovery{
					Resource:         info.Resource,
					ResponseKind:     &metav1.GroupVersionKind{Group: g, Version: v, Kind: info.Kind},
					Scope:            scope,
					SingularResource: strings.ToLower(info.Kind),
					Verbs:            verbsOf(info),
					ShortNames:       info.ShortNames,
					Categories:       info.Categories,
				})
			}
			d.Versions = append(d.Versions, vd)
		}
		list.Items = append(list.Items, d)
	}
	return list
}

func (s *Server) writeAggregated(w http.ResponseWriter, list *apidiscoveryv2.APIGroupDiscoveryList) {
	b, err := json.Marshal(list)
	if err != nil {
		s.writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", aggregatedContentType)
	w.Header().Set("Vary", "Accept")
	_, _ = w.Write(append(b, '\n'))
}

// writeJSON answers 200 with v as JSON.
func (s *Server) writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		s.writeStatus(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
