#!/usr/bin/env bash
# Installs everything reportstore needs to build, test and run its demo on a
# fresh Debian 12 machine (as root). Safe to run again.
set -euo pipefail

packages=(
	build-essential g++ make cmake pkg-config git curl ca-certificates
	postgresql-15 postgresql-server-dev-15 postgresql-client-15
	libcurl4-openssl-dev libssl-dev libxml2-dev zlib1g-dev libzstd-dev
	libgtest-dev
	python3 python3-psycopg2 python3-pytest python3-boto3
)

# The local S3 server is moto when a Python with moto is present, else s3rver
# from npm (see test/harness/s3stack.sh); the chaos test always uses s3rver,
# which keeps objects on disk across its restarts. Both need Node.js.
if ! command -v npm >/dev/null 2>&1; then
	packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "reportstore: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's postgresql-common creates a default cluster; the tests and the demo
# run their own throwaway clusters and never touch it.
id postgres >/dev/null 2>&1 || { echo "reportstore: the postgres OS user is missing" >&2; exit 1; }
echo "reportstore: dependencies ready"
