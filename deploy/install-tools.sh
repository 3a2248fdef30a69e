#!/usr/bin/env bash
# Installs the system tools the tests and `make up` use, from Debian packages, when missing:
#   promtool, prometheus (Debian's prometheus package)  -- alert rule checks, `make up`
# Needs root (CI runs as root); otherwise prints the command to run.
set -euo pipefail

missing=()
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing tools; install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
