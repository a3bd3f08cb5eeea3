#!/usr/bin/env bash
# Installs everything reportstore needs to build, test and run its demo on a
# fresh Debian 12 machine (as root). Safe to run again.
set -euo pipefail

packages=(
	build-essential g++ make cmake pkg-config git curl ca-certificates
	postgresql-15 postgresql-server-dev-15 postgresql-client-15
	libcurl4-openssl-dev libssl-dev libxml2-dev zlib1g-dev libzstd-dev
	libgtest-dev
	python3 python3-psycopg2 python3-pytest python3-boto3 openssl
	# the zstd CLI: the integration tests decode zstd objects with it
	zstd
	# the local S3 server of the tests and the demo: a throwaway single-node Ceph cluster
	# with the RADOS Gateway (test/harness/rgw.sh)
	radosgw ceph-mon ceph-osd ceph-common
)
# (moto and s3rver, the harness's optional S3 servers, are not installed here:
# S3_BACKEND=moto needs a Python with moto, S3_BACKEND=s3rver installs it with npm.)

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
