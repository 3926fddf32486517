#!/usr/bin/env python3
"""Follow the pods of a namespace through krm's cache, as an informer does.

It LISTs the pods, then WATCHes from the list's resourceVersion, so no change
between the two is missed; kubernetes.watch.Watch turns each event's object
into a V1Pod. When the watch ends it prints the last resourceVersion seen:
pass it to --resource-version to carry on from there later. A
resourceVersion older than the server keeps gets 410 Gone, and then it
lists again.

    kubectl krm proxy &
    python3 watch_pods.py shop --timeout 60
    python3 watch_pods.py shop --resource-version 1234
"""

import math
import sys
import time

import kubernetes

import krmproxy


def list_pods(core, namespace):
    """LIST the pods, print them and return the list's resourceVersion."""
    pods = core.list_namespaced_pod(namespace)
    rv = pods.metadata.resource_version
    print("%s: %d pods in %s at resourceVersion %s" % (type(pods).__name__, len(pods.items), namespace, rv))
    for pod in pods.items:
        print("  %s %s" % (pod.metadata.name, pod.status.phase))
    return rv


def main(args):
    # Each event is printed as it comes, also into a pipe.
    sys.stdout.reconfigure(line_buffering=True)
    deadline = time.monotonic() + args.timeout
    rv = args.resource_version
    with krmproxy.api_client(args.host) as api:
        core = kubernetes.client.CoreV1Api(api)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            remaining = math.ceil(left)
            if rv is None:
                rv = list_pods(core, args.namespace)
            print("watching pods in %s from resourceVersion %s for %ds" % (args.namespace, rv, remaining))
            watch = kubernetes.watch.Watch()
            try:
                for event in watch.stream(
                    core.list_namespaced_pod,
                    args.namespace,
                    resource_version=rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=remaining,
                ):
                    if event["type"] == "BOOKMARK":
                        # A bookmark carries only a resourceVersion; the
                        # client leaves it as a dict.
                        rv = event["raw_object"]["metadata"]["resourceVersion"]
                        print("BOOKMARK  resourceVersion=%s" % rv)
                        continue
                    pod = event["object"]
                    rv = pod.metadata.resource_version
                    print(
                        "%-9s %s %s phase=%s resourceVersion=%s"
                        % (event["type"], pod.metadata.name, type(pod).__name__, pod.status.phase, rv)
                    )
            except kubernetes.client.ApiException as err:
                if err.status != 410:
                    raise
                print("resourceVersion %s is too old for the server (%s); listing again" % (rv, krmproxy.describe(err)))
                rv = None
    print("watch ended; carry on with --resource-version %s" % rv)


if __name__ == "__main__":
    parser = krmproxy.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("namespace")
    parser.add_argument("--timeout", type=int, default=60, help="seconds to watch for (default 60)")
    parser.add_argument("--resource-version", help="watch from this resourceVersion instead of listing first")
    raise SystemExit(krmproxy.run(main, parser))
