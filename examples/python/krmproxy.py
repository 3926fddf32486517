"""Point the official Kubernetes Python client at `kubectl krm proxy`.

krm-agent serves its cache as a read-only Kubernetes API, and `kubectl krm
proxy` serves that API on http://127.0.0.1:8001 as `kubectl proxy` serves the
API server's. So the client needs nothing but the proxy's address: no
kubeconfig and no token, and no krm-specific client.
"""

import argparse
import json
import os
import sys

import kubernetes
import urllib3

DEFAULT_HOST = "http://127.0.0.1:8001"
HOST_ENV = "KRM_PROXY_URL"

# krm's freshness, sent with every read: when the agent last confirmed the
# resource with a LIST, the resourceVersion it serves, and how long ago its
# watch of the API server last spoke.
FRESHNESS_HEADERS = ("X-Krm-Verified-At", "X-Krm-Resource-Version", "X-Krm-Stream-Lag")


def argument_parser(description):
    """An ArgumentParser with --host, which defaults to $KRM_PROXY_URL."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--host",
        default=os.environ.get(HOST_ENV) or DEFAULT_HOST,
        help="where kubectl krm proxy serves (default: $%s, else %s)" % (HOST_ENV, DEFAULT_HOST),
    )
    return parser


def api_client(host):
    """An ApiClient for the proxy at host; use it in a with statement."""
    return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=host))


def print_freshness(headers, indent="  "):
    """Print krm's freshness headers from a response's headers."""
    for name in FRESHNESS_HEADERS:
        print("%s%s: %s" % (indent, name, headers.get(name, "(not sent)")))


def print_table(rows, indent="  "):
    """Print rows of cells in columns, as kubectl does."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths)]
        print((indent + "   ".join(cells)).rstrip())


def run(main, parser):
    """Parse the arguments, run main(args) and turn the ways reaching the
    proxy can fail into one line on stderr and exit status 1."""
    args = parser.parse_args()
    try:
        return main(args) or 0
    except urllib3.exceptions.MaxRetryError as err:
        print(
            "error: nothing answers at %s (%s).\n"
            "Start the proxy with `kubectl krm proxy` (it serves on %s), "
            "or point --host or $%s at where it serves."
            % (args.host, root_cause(err), DEFAULT_HOST, HOST_ENV),
            file=sys.stderr,
        )
    except urllib3.exceptions.HTTPError as err:
        print(
            "error: the connection to kubectl krm proxy at %s broke (%s); is it still running?"
            % (args.host, root_cause(err)),
            file=sys.stderr,
        )
    except kubernetes.client.ApiException as err:
        print("error: %s answered %s" % (args.host, describe(err)), file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


def describe(err):
    """The status code, reason and message of an ApiException: the
    Kubernetes Status in its body if it has one."""
    body = err.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        status = None
    if isinstance(status, dict) and status.get("kind") == "Status":
        return "%s %s: %s" % (err.status, status.get("reason"), status.get("message"))
    # A watch's ERROR event arrives as an ApiException without a body; its
    # reason already holds the Status's reason and message.
    return "%s %s" % (err.status, err.reason)


def root_cause(err):
    """The innermost error behind err, which for a refused connection is
    the OSError that says so."""
    cause = getattr(err, "reason", None) or err
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause)
