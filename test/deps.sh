#!/usr/bin/env bash
# Installs the Debian packages the integration and e2e tests need and the Go
# toolchain does not bring, when they are missing: Debian's Python client
# (test/e2e's TestPythonClient runs examples/python with it) and headless
# chromium (TestWebView drives the agent's web view in it). As root it
# installs them; otherwise through sudo, or it says what to install.
set -euo pipefail
missing=()
if ! /usr/bin/python3 -c 'import kubernetes' 2>/dev/null; then
	missing+=(python3-kubernetes)
fi
if ! command -v chromium >/dev/null; then
	missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing the tests' Debian packages: ${missing[*]}" >&2
run=()
if [ "$(id -u)" != 0 ]; then
	if ! command -v sudo >/dev/null; then
		echo "the tests need: apt-get install -y --no-install-recommends ${missing[*]} (run it as root, then make test again)" >&2
		exit 1
	fi
	run=(sudo)
fi
"${run[@]}" apt-get update
"${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
