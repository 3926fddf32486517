#!/usr/bin/env python3
"""List pods and deployments from krm's cache, as typed Kubernetes objects.

The official client, `kubernetes`, reads through `kubectl krm proxy` exactly
as it reads from an API server: list_pod_for_all_namespaces returns a
V1PodList of V1Pods, list_deployment_for_all_namespaces a V1DeploymentList.
The *_with_http_info variants also return the response's headers, which
carry krm's freshness.

    kubectl krm proxy &
    python3 list_pods.py                       # every namespace
    python3 list_pods.py -n shop -l app=web    # one namespace, a selector
"""

import functools

import kubernetes

import krmproxy


def list_pages(list_with_http_info, limit, **kwargs):
    """LIST in pages of limit items, following metadata._continue as kubectl
    does; return the pages and the first page's headers."""
    pages, headers, token = [], None, None
    while True:
        page, _status, page_headers = list_with_http_info(limit=limit, _continue=token, **kwargs)
        pages.append(page)
        headers = headers or page_headers
        token = page.metadata._continue
        if not token:
            return pages, headers


def show(what, pages, headers, row, columns):
    """Print a summary of the LIST, krm's freshness and one row per item."""
    items = [item for page in pages for item in page.items]
    print(
        "%s: %s with %s in %s, resourceVersion %s"
        % (what, type(pages[0]).__name__, count(len(items), "item"), count(len(pages), "page"), pages[0].metadata.resource_version)
    )
    krmproxy.print_freshness(headers)
    if items:
        krmproxy.print_table([columns] + [row(item) for item in items])


def count(n, noun):
    return "%d %s%s" % (n, noun, "" if n == 1 else "s")


def pod_row(pod):
    return ["%s/%s" % (pod.metadata.namespace, pod.metadata.name), pod.status.phase, pod.spec.node_name or "<none>", type(pod).__name__]


def deployment_row(deploy):
    ready = "%d/%d" % (deploy.status.ready_replicas or 0, deploy.spec.replicas)
    return ["%s/%s" % (deploy.metadata.namespace, deploy.metadata.name), ready, type(deploy).__name__]


def main(args):
    selectors = {}
    if args.selector:
        selectors["label_selector"] = args.selector
    if args.field_selector:
        selectors["field_selector"] = args.field_selector

    with krmproxy.api_client(args.host) as api:
        core = kubernetes.client.CoreV1Api(api)
        apps = kubernetes.client.AppsV1Api(api)
        if args.namespace:
            list_pods = functools.partial(core.list_namespaced_pod_with_http_info, args.namespace)
            list_deployments = functools.partial(apps.list_namespaced_deployment_with_http_info, args.namespace)
        else:
            list_pods = core.list_pod_for_all_namespaces_with_http_info
            list_deployments = apps.list_deployment_for_all_namespaces_with_http_info

        pages, headers = list_pages(list_pods, args.limit, **selectors)
        show("pods", pages, headers, pod_row, ["NAMESPACE/NAME", "PHASE", "NODE", "TYPE"])
        pages, headers = list_pages(list_deployments, args.limit, **selectors)
        show("deployments", pages, headers, deployment_row, ["NAMESPACE/NAME", "READY", "TYPE"])


if __name__ == "__main__":
    parser = krmproxy.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("-n", "--namespace", help="one namespace (default: all)")
    parser.add_argument("-l", "--selector", help="a label selector, e.g. app=web")
    parser.add_argument("--field-selector", help="a field selector, e.g. status.phase=Running")
    parser.add_argument("--limit", type=int, default=500, help="items per page (default 500, as kubectl's --chunk-size)")
    raise SystemExit(krmproxy.run(main, parser))
