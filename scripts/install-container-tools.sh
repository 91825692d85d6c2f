#!/usr/bin/env bash
# Install what the container tests need, from Debian's packages: a Docker engine
# and its client (docker.io: dockerd, docker; with containerd and runc), Debian's
# docker-registry (the stand-in for ECR's registry) and mmdebstrap (builds the
# stand-in base image).
#
# Idempotent and fast when everything is present: apt-get runs only for a
# missing tool. No service is started or enabled: the tests start their own
# dockerd and registry in temp dirs, on loopback and unix sockets, by pid.
# Exits non-zero with the reason when a tool is missing and cannot be installed
# (not root, no apt-get), so CI never skips the container tests silently.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have dockerd || need+=(docker.io)
have docker || need+=(docker.io)
have containerd || need+=(containerd)
have runc || need+=(runc)
have docker-registry || need+=(docker-registry)
have mmdebstrap || need+=(mmdebstrap)

if [ "${#need[@]}" -eq 0 ]; then
    exit 0
fi
# docker.io may be named twice (engine and client).
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)

fail() {
    echo "install-container-tools: $1" >&2
    echo "install-container-tools: the container tests need: ${need[*]}" \
        "(Debian packages); $2" >&2
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    fail "not running as root, so apt-get cannot install them" \
        "run \`sudo scripts/install-container-tools.sh\` once, then \`make test\` again"
fi
if ! have apt-get; then
    fail "apt-get is not available on this machine" \
        "install the equivalent packages with this system's package manager"
fi

echo "install-container-tools: installing ${need[*]}"
# Keep the packages' own services (dockerd, the registry on :5000) from starting.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
started=$(date +%s)
apt-get update -qq ||
    fail "\`apt-get update\` failed (see above)" "check this machine's apt sources"
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
    fail "\`apt-get install ${need[*]}\` failed (see above)" \
        "check that the packages exist in this machine's apt sources (Debian 12)"
echo "install-container-tools: done in $(($(date +%s) - started)) s"
