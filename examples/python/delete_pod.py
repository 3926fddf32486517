#!/usr/bin/env python3
"""Delete a pod through krm, which refuses: krm is read-only.

Any write (create, update, patch, delete) through `kubectl krm proxy` gets
405 Method Not Allowed with a Kubernetes Status that names the API server to
send it to; the client raises it as an ApiException, and this script prints
that Status and exits 1. Send writes to the API server itself.

    kubectl krm proxy &
    python3 delete_pod.py shop web-7c5d8b9f4-abcde
"""

import kubernetes

import krmproxy


def main(args):
    with krmproxy.api_client(args.host) as api:
        core = kubernetes.client.CoreV1Api(api)
        status = core.delete_namespaced_pod(args.name, args.namespace)
        print("deleted pod %s/%s (%s)" % (args.namespace, args.name, type(status).__name__))


if __name__ == "__main__":
    parser = krmproxy.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("namespace")
    parser.add_argument("name")
    raise SystemExit(krmproxy.run(main, parser))
