#!/usr/bin/env bash
# Builds stand-in images for machines that cannot pull from Docker Hub (as in CI here):
#   steadyrank-standin/python:3.11-bookworm -- Debian bookworm from debootstrap, whose python3
#       is 3.11, with venv and pip, and this machine's CA bundle (pip and apt inside
#       containers then trust what this machine trusts)
#   steadyrank-standin/prometheus:bookworm  -- that base with Debian's prometheus package,
#       started like the official image (ENTRYPOINT prometheus, flags as the command)
#   steadyrank-standin/nginx:bookworm       -- that base with Debian's nginx (gRPC proxy)
# docker-compose.yml keeps the official images as defaults; deploy/test/compose.standin.yml
# swaps these in. Needs root (debootstrap) and a running Docker engine.
set -euo pipefail
cd "$(dirname "$0")"
BASE=steadyrank-standin/python:3.11-bookworm
PROMETHEUS=steadyrank-standin/prometheus:bookworm
NGINX=steadyrank-standin/nginx:bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if ! docker image inspect "$BASE" >/dev/null 2>&1; then
  echo "building $BASE with debootstrap (a few minutes)"
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates,passwd \
    bookworm "$rootfs" "$MIRROR" >/dev/null
  # A copy update-ca-certificates never rewrites, named by the variables pip, requests and
  # OpenSSL read.
  cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/host-ca-bundle.crt"
  cp "$CA_BUNDLE" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt' \
    --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/host-ca-bundle.crt' \
    --change 'CMD ["python3"]' - "$BASE" >/dev/null
fi

if ! docker image inspect "$PROMETHEUS" >/dev/null 2>&1; then
  echo "building $PROMETHEUS"
  DOCKER_BUILDKIT=0 docker build -q -t "$PROMETHEUS" --build-arg "BASE_IMAGE=$BASE" \
    -f prometheus.Dockerfile . >/dev/null
fi
if ! docker image inspect "$NGINX" >/dev/null 2>&1; then
  echo "building $NGINX"
  DOCKER_BUILDKIT=0 docker build -q -t "$NGINX" --build-arg "BASE_IMAGE=$BASE" \
    -f nginx.Dockerfile . >/dev/null
fi
echo "stand-in images: $BASE $PROMETHEUS $NGINX"
