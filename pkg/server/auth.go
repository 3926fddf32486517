package server

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metainternalversionscheme "k8s.io/apimachinery/pkg/apis/meta/internalversion/scheme"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// SecureHandler is Handler for callers who are not trusted by where they
// connect from: every request is authenticated by authn and authorized by
// authz for what kube-apiserver would check for the same request, before
// anything is looked up. No or a bad credential gets 401, a denied request
// 403 worded as kube-apiserver words it. The web view's static files
// (ui.Prefix) are the exception: they hold no data, and the browser fetches
// them without a token; every number they show is read through the API.
func (s *Server) SecureHandler(authn authenticator.Request, authz authorizer.UnconditionalAuthorizer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := newRecorder(w, "denied", s.opts.WriteTimeout)
		defer rec.clearDeadline()
		if isUIPath(r.URL.Path) || s.admitCaller(rec, r, authn, authz) {
			rec.route = "unmatched"
			s.route(rec, r)
		}
		s.metrics.observe(rec.route, rec.resource, rec.code(), time.Since(start))
	})
}

// admitCaller authenticates and authorizes r, answering 401, 403 or 500
// when it may not go on.
func (s *Server) admitCaller(w http.ResponseWriter, r *http.Request, authn authenticator.Request, authz authorizer.UnconditionalAuthorizer) bool {
	resp, ok, err := authn.AuthenticateRequest(r)
	if err != nil || !ok {
		if err != nil {
			s.log.Debug("refused a request that failed authentication", "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
		}
		s.writeStatus(w, apierrors.NewUnauthorized("Unauthorized"))
		return false
	}
	if h := impersonationHeader(r.Header); h != "" {
		// kube-apiserver would act as the impersonated user after checking
		// the impersonate verb; the agent implements neither, and reading
		// as the caller while they believe otherwise would surprise them.
		s.writeStatus(w, apierrors.NewForbidden(schema.GroupResource{}, "", fmt.Errorf(
			"the krm agent does not support impersonation (%s): it reads as the caller, %q; drop --as/--as-group (the Impersonate-* headers) and use the credentials of the identity you want to read as",
			h, resp.User.GetName())))
		return false
	}
	attrs := requestAttributes(r, resp.User)
	if r.URL.Path == revisionsPath || r.URL.Path == revisionsPath+"/" {
		attrs = s.revisionAttributes(r, resp.User)
	}
	decision, reason, err := authz.Authorize(r.Context(), &attrs)
	if decision == authorizer.DecisionAllow {
		return true
	}
	if err != nil {
		// As kube-apiserver: an authorizer's error on a request it did
		// not allow is the server's failure, not the caller's.
		s.log.Error("authorizing a request", "user", resp.User.GetName(), "verb", attrs.Verb, "path", r.URL.Path, "err", err)
		s.writeStatus(w, apierrors.NewInternalError(fmt.Errorf("authorizing %s %s: %w", attrs.Verb, r.URL.Path, err)))
		return false
	}
	s.writeStatus(w, forbidden(&attrs, reason))
	return false
}

// requestAttributes is what kube-apiserver's authorization filter asks of
// its authorizer for r (k8s.io/apiserver's RequestInfoFactory and
// GetAuthorizerAttributes), with the path read by splitResourcePath, the
// parser the handlers use, so what is authorized is what is served:
//
//   - a collection is list, or watch with watch=true; a metadata.name field
//     selector names the object, so RBAC's resourceNames apply;
//   - one object is get, or watch for the /watch/ prefix or watch=true
//     (which krm serves as a watch of that name);
//   - krm.io's objects are resources of group krm.io, read with get and
//     list;
//   - /version, /healthz, /readyz, /metrics and discovery (/api, /apis,
//     /api/v1, /apis/{group}[/{version}]) are non-resource paths.
func requestAttributes(r *http.Request, u user.Info) authorizer.AttributesRecord {
	nonResource := authorizer.AttributesRecord{User: u, Verb: strings.ToLower(r.Method), Path: r.URL.Path}
	p := r.URL.Path
	if !strings.HasPrefix(p, "/api/") && !strings.HasPrefix(p, "/apis/") {
		return nonResource
	}
	segs := strings.Split(strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/"), "/")
	if len(segs) < 2 || slices.Contains(segs, "") {
		return nonResource
	}
	a := authorizer.AttributesRecord{User: u, Path: p, ResourceRequest: true}
	var rest []string
	if segs[0] == "api" {
		a.APIVersion, rest = segs[1], segs[2:]
	} else {
		if len(segs) < 3 {
			return nonResource
		}
		a.APIGroup, a.APIVersion, rest = segs[1], segs[2], segs[3:]
	}
	if len(rest) == 0 {
		return nonResource
	}
	parts, ok := splitResourcePath(rest)
	if !ok {
		return nonResource
	}
	a.Namespace, a.Resource, a.Name, a.Subresource = parts.namespace, parts.resource, parts.name, parts.sub
	if a.Resource == "namespaces" && a.Namespace == "" && a.Name != "" {
		// kube-apiserver: a namespace is in itself, so a RoleBinding in
		// it may grant reading it.
		a.Namespace = a.Name
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		a.Verb = "get"
	case http.MethodPost:
		a.Verb = "create"
	case http.MethodPut:
		a.Verb = "update"
	case http.MethodPatch:
		a.Verb = "patch"
	case http.MethodDelete:
		a.Verb = "delete"
		if a.Name == "" {
			a.Verb = "deletecollection"
		}
	default:
		a.Verb = strings.ToLower(r.Method)
	}
	if parts.watch {
		// As kube-apiserver, no selectors for the /watch/ prefix.
		a.Verb = "watch"
		return a
	}
	if a.Verb == "get" {
		opts := listOptions(r)
		switch {
		case a.Name != "" && opts.Watch:
			a.Verb = "watch"
		case a.Name == "":
			a.Verb = "list"
			if opts.Watch {
				a.Verb = "watch"
			}
			if opts.FieldSelector != nil {
				if name, ok := opts.FieldSelector.RequiresExactMatch("metadata.name"); ok && len(path.IsValidPathSegmentName(name)) == 0 {
					a.Name = name
				}
			}
		}
	}
	switch a.Verb {
	case "list", "watch", "deletecollection":
		addSelectors(&a, r.URL.Query())
	}
	return a
}

// addSelectors passes the request's selectors to the authorizer, as
// kube-apiserver does, so a selector-aware authorizer (the node
// authorizer's spec.nodeName) decides as it would there.
func addSelectors(a *authorizer.AttributesRecord, q url.Values) {
	if v := q["fieldSelector"]; len(v) > 0 && v[0] != "" {
		sel, err := fields.ParseSelector(v[0])
		switch {
		case err != nil:
			a.FieldSelectorParsingErr = err
		case len(sel.Requirements()) > 0:
			a.FieldSelectorRequirements = sel.Requirements()
		}
	}
	if v := q["labelSelector"]; len(v) > 0 && v[0] != "" {
		sel, err := labels.Parse(v[0])
		if err != nil {
			a.LabelSelectorParsingErr = err
		} else if reqs, _ := sel.Requirements(); len(reqs) > 0 {
			a.LabelSelectorRequirements = reqs
		}
	}
}

// listOptions decodes r's query as the handlers do; on an error, only its
// watch parameter, as kube-apiserver falls back to. The handler then
// answers the error.
func listOptions(r *http.Request) metainternalversion.ListOptions {
	q := r.URL.Query()
	var opts metainternalversion.ListOptions
	if err := metainternalversionscheme.ParameterCodec.DecodeParameters(q, metav1.SchemeGroupVersion, &opts); err == nil {
		return opts
	}
	opts = metainternalversion.ListOptions{}
	if v := q["watch"]; len(v) > 0 {
		switch strings.ToLower(v[0]) {
		case "false", "0":
		default:
			opts.Watch = true
		}
	}
	return opts
}

// forbidden is kube-apiserver's 403 for attrs, worded as its
// responsewriters.ForbiddenStatusError words it (copied: that package
// brings the apiserver's tracing and admission with it), e.g.
// `pods is forbidden: User "u" cannot list resource "pods" in API group ""
// in the namespace "ns"`.
func forbidden(attrs authorizer.Attributes, reason string) *apierrors.StatusError {
	msg := forbiddenSanitizer.Replace(forbiddenMessage(attrs))
	err := fmt.Errorf("%s", msg)
	if reason != "" {
		err = fmt.Errorf("%s: %s", msg, reason)
	}
	gr := schema.GroupResource{Group: attrs.GetAPIGroup(), Resource: attrs.GetResource()}
	return apierrors.NewForbidden(gr, attrs.GetName(), err)
}

var forbiddenSanitizer = strings.NewReplacer(`&`, "&amp;", `<`, "&lt;", `>`, "&gt;")

func forbiddenMessage(attrs authorizer.Attributes) string {
	username := ""
	if u := attrs.GetUser(); u != nil {
		username = u.GetName()
	}
	if !attrs.IsResourceRequest() {
		return fmt.Sprintf("User %q cannot %s path %q", username, attrs.GetVerb(), attrs.GetPath())
	}
	resource := attrs.GetResource()
	if sub := attrs.GetSubresource(); sub != "" {
		resource += "/" + sub
	}
	if ns := attrs.GetNamespace(); ns != "" {
		return fmt.Sprintf("User %q cannot %s resource %q in API group %q in the namespace %q", username, attrs.GetVerb(), resource, attrs.GetAPIGroup(), ns)
	}
	return fmt.Sprintf("User %q cannot %s resource %q in API group %q at the cluster scope", username, attrs.GetVerb(), resource, attrs.GetAPIGroup())
}

// impersonationHeader returns the first Impersonate-* header of h, "" when
// there is none.
func impersonationHeader(h http.Header) string {
	for k := range h {
		if strings.HasPrefix(k, "Impersonate-") {
			return k
		}
	}
	return ""
}
