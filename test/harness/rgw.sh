#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with the RADOS Gateway (S3), for tests:
# one mon, one OSD on memstore (RAM only, nothing on disk), pool size 1, no
# cephx, radosgw (beast) on 127.0.0.1 over http and https (a throwaway CA).
#
#   test/harness/rgw.sh start DIR          # ports free ones (or RGW_PORT, RGW_SSL_PORT)
#   test/harness/rgw.sh stop DIR           # idempotent: radosgw, then the OSD, then the mon
#   test/harness/rgw.sh status DIR
#   test/harness/rgw.sh restart-gateway DIR  # radosgw only; the objects stay (they live in the OSD)
#
# Environment at start:
#   RGW_PORT, RGW_SSL_PORT     fixed ports (default: free ones); a taken port fails, naming it
#   RGW_MEMSTORE_BYTES         the OSD's RAM cap (default 3 GiB)
#   RGW_ACCESS_KEY, RGW_SECRET_KEY  the S3 user's keys (default: the suite's test keys)
#   RGW_TIMEOUT                seconds to wait for each daemon (default 60)
#
# After start DIR/rgw.env (shell-sourceable) holds the endpoints, keys, CA,
# KMS key ids and the STS role (see test/harness/README.md). Logs: DIR/log/*.log. No secret key
# is ever printed or logged.
set -euo pipefail

HARNESS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TIMEOUT=${RGW_TIMEOUT:-60}
UID_NAME=rstest
ROLE_NAME=reportstore-test

die() { echo "rgw: $*" >&2; exit 1; }
say() { echo "rgw: $*" >&2; }

alive() { # alive PIDFILE
	[ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# start_bg DIR NAME CMD...: CMD in its own session, in the foreground (-f), pid in DIR/run/NAME.pid
start_bg() {
	local dir=$1 name=$2
	shift 2
	setsid "$@" >>"$dir/log/$name.out" 2>&1 </dev/null &
	echo $! >"$dir/run/$name.pid"
}

# own_pid DIR NAME: the pid in DIR/run/NAME.pid if that process is alive and is still ours
own_pid() {
	local pidfile="$1/run/$2.pid" pid prog
	case $2 in mon) prog=ceph-mon ;; osd) prog=ceph-osd ;; *) prog=$2 ;; esac
	[ -s "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	kill -0 "$pid" 2>/dev/null || return 1
	if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$prog -c $1/ceph.conf"; then
		say "pid $pid in $pidfile is not our $prog any more; not touching it"
		return 1
	fi
	echo "$pid"
}

stop_gracefully() { # stop_gracefully DIR NAME: SIGTERM, SIGKILL after 10 s
	local pid i
	pid=$(own_pid "$1" "$2") || { rm -f "$1/run/$2.pid"; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 100); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "$2 (pid $pid) did not stop within 10 s of SIGTERM, killing it"
		kill -KILL "$pid" 2>/dev/null || true
		for i in $(seq 1 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
	fi
	rm -f "$1/run/$2.pid"
}

ceph_cli() { # ceph_cli DIR ARGS...: the ceph tool against this cluster
	local dir=$1
	shift
	timeout 60 ceph -c "$dir/ceph.conf" --connect-timeout 30 "$@"
}

port_free_or_die() { # port_free_or_die PORT WHAT
	/usr/bin/python3 "$HARNESS/freeport.py" --check "$1" 2>/dev/null || die "port $1 ($2) is already in use"
}

make_tls() { # make_tls DIR: a throwaway CA, and server certificates for 127.0.0.1/localhost
	local d="$1/tls"
	mkdir -p "$d"
	(
		cd "$d"
		o() { openssl "$@" >/dev/null 2>&1; }
		ca() {
			o req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 7 -subj "/CN=reportstore test $1" \
				-keyout "$1.key" -out "$1.pem" -addext "basicConstraints=critical,CA:TRUE" \
				-addext "keyUsage=critical,keyCertSign,cRLSign"
		}
		cert() { # cert NAME CA CN SAN
			printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$4" >"$1.ext"
			o req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "/CN=$3" -keyout "$1.key" -out "$1.csr"
			o x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 7 -sha256 \
				-extfile "$1.ext" -out "$1.pem"
		}
		ca ca
		ca otherca
		cert good ca 127.0.0.1 "IP:127.0.0.1,DNS:localhost,DNS:*.localhost"
		cert wrongname ca s3.other.invalid "DNS:s3.other.invalid"
		cert rogue otherca 127.0.0.1 "IP:127.0.0.1,DNS:localhost,DNS:*.localhost"
		rm -f ./*.csr ./*.ext ./*.srl
	) || die "openssl could not make the test certificates"
	chmod 755 "$d"
	chmod 644 "$d"/*.pem
	chmod 600 "$d"/*.key
}

write_conf() { # write_conf DIR FSID MONPORT PORT SSLPORT WRONGPORT ROGUEPORT
	local dir=$1 fsid=$2 monport=$3 port=$4 sslport=$5 wrongport=$6 rogueport=$7
	local t="$dir/tls" sts kms1 kms2
	sts=$(openssl rand -hex 8)
	kms1=$(openssl rand -base64 32)
	kms2=$(openssl rand -base64 32)
	cat >"$dir/ceph.conf" <<CONF
# written by test/harness/rgw.sh: a throwaway single-node test cluster
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$monport
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
ms mon client mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = false
mon cluster log file = $dir/log/cluster.log
mon data = $dir/\$name
osd data = $dir/\$name
osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-3221225472}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
paxos propose interval = 0.05
mon osd report timeout = 3600
osd heartbeat grace = 3600
osd max object size = 1073741824
debug ms = 0
debug mon = 0
debug osd = 0
debug paxos = 0

[client]
rgw frontends = beast endpoint=127.0.0.1:$port ssl_endpoint=127.0.0.1:$sslport ssl_certificate=$t/good.pem ssl_private_key=$t/good.key, beast ssl_endpoint=127.0.0.1:$wrongport ssl_certificate=$t/wrongname.pem ssl_private_key=$t/wrongname.key, beast ssl_endpoint=127.0.0.1:$rogueport ssl_certificate=$t/rogue.pem ssl_private_key=$t/rogue.key
rgw dns name = localhost
rgw s3 auth use sts = true
rgw sts key = $sts
rgw crypt s3 kms backend = testing
rgw crypt s3 kms encryption keys = testkey-1=$kms1 testkey-2=$kms2
rgw enable usage log = false
rgw gc processor period = 60
rgw thread pool size = 64
debug rgw = 1
CONF
}

wait_until() { # wait_until SECONDS WHAT PIDFILE CMD...: poll CMD until it succeeds
	local secs=$1 what=$2 pidfile=$3 deadline
	shift 3
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [ -n "$pidfile" ] && ! alive "$pidfile"; then
			say "$what exited during start-up"
			return 1
		fi
		if [ $SECONDS -ge $deadline ]; then
			say "$what not ready within ${secs}s"
			return 1
		fi
		sleep 0.2
	done
}

phase() { # phase NAME: time since the last phase, into DIR/log/startup.times
	local now
	now=$(date +%s.%N)
	awk -v a="$PHASE_T" -v b="$now" -v n="$1" 'BEGIN { printf "%s %.2f\n", n, b - a }' >>"$PHASE_FILE"
	PHASE_T=$now
}

http_up() { curl -s -o /dev/null --max-time 2 "$1"; }

write_env() { # write_env DIR PORT SSLPORT WRONGPORT ROGUEPORT
	local dir=$1
	{
		echo "# written by test/harness/rgw.sh; source this file"
		printf 'RGW_ENDPOINT=%q\n' "http://127.0.0.1:$2"
		printf 'RGW_HTTPS_ENDPOINT=%q\n' "https://127.0.0.1:$3"
		printf 'RGW_HTTPS_WRONGNAME_ENDPOINT=%q\n' "https://127.0.0.1:$4"
		printf 'RGW_HTTPS_ROGUE_ENDPOINT=%q\n' "https://127.0.0.1:$5"
		printf 'RGW_CA_FILE=%q\n' "$dir/tls/ca.pem"
		printf 'RGW_OTHER_CA_FILE=%q\n' "$dir/tls/otherca.pem"
		printf 'RGW_ACCESS_KEY=%q\n' "$ACCESS_KEY"
		printf 'RGW_SECRET_KEY=%q\n' "$SECRET_KEY"
		printf 'RGW_ALT_ACCESS_KEY=%q\n' "$ALT_ACCESS_KEY"
		printf 'RGW_ALT_SECRET_KEY=%q\n' "$ALT_SECRET_KEY"
		printf 'RGW_KMS_KEY_ID=%q\n' testkey-1
		printf 'RGW_STORAGE_CLASSES=%q\n' "STANDARD STANDARD_IA"
		printf 'RGW_VERSION=%q\n' "$(radosgw --version | sed -n 's/^ceph version \([^ ]*\).*/\1/p')"
		printf 'RGW_DIR=%q\n' "$dir"
		printf 'RGW_ROLE_ARN=%q\n' "arn:aws:iam:::role/$ROLE_NAME"
		echo "export RGW_ENDPOINT RGW_HTTPS_ENDPOINT RGW_HTTPS_WRONGNAME_ENDPOINT RGW_HTTPS_ROGUE_ENDPOINT RGW_CA_FILE RGW_OTHER_CA_FILE RGW_ACCESS_KEY RGW_SECRET_KEY RGW_ALT_ACCESS_KEY RGW_ALT_SECRET_KEY RGW_KMS_KEY_ID RGW_STORAGE_CLASSES RGW_VERSION RGW_DIR RGW_ROLE_ARN"
	} >"$dir/rgw.env.tmp"
	chmod 644 "$dir/rgw.env.tmp"
	mv "$dir/rgw.env.tmp" "$dir/rgw.env"
}

start_gateway() { # start_gateway DIR
	local dir=$1 port
	port=$(sed -n 's/^RGW_PORT=//p' "$dir/ports")
	start_bg "$dir" radosgw radosgw -c "$dir/ceph.conf" -n client.rgw.gw -f
	wait_until "$TIMEOUT" radosgw "$dir/run/radosgw.pid" http_up "http://127.0.0.1:$port/" || {
		tail -n 20 "$dir/log/client.rgw.gw.log" "$dir/log/radosgw.out" >&2 2>/dev/null
		return 1
	}
}

cmd_start() {
	local dir=$1
	command -v radosgw >/dev/null && command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null ||
		die "Ceph is not installed (apt-get install radosgw ceph-mon ceph-osd ceph-common; scripts/install-deps.sh does)"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if alive "$dir/run/mon.pid" || alive "$dir/run/osd.pid" || alive "$dir/run/radosgw.pid"; then
		die "a cluster is already running in $dir (run: $0 stop $dir)"
	fi
	rm -rf "$dir/mon.a" "$dir/osd.0" "$dir/run" "$dir/log" "$dir/rgw.env" "$dir/ports" "$dir/tls"
	mkdir -p "$dir/run" "$dir/log"
	chmod 755 "$dir"
	local t0=$SECONDS
	PHASE_FILE="$dir/log/startup.times"
	PHASE_T=$(date +%s.%N)
	ACCESS_KEY=${RGW_ACCESS_KEY:-rstest-access-key}
	SECRET_KEY=${RGW_SECRET_KEY:-rstest-SECRET-do-not-log-7f3a9c}
	ALT_ACCESS_KEY=rstest-alt-access-key
	ALT_SECRET_KEY="rstest-ALT-$(openssl rand -hex 12)"

	local ports monport port sslport wrongport rogueport
	mapfile -t ports < <(/usr/bin/python3 "$HARNESS/freeport.py" 5)
	monport=${ports[0]}
	port=${RGW_PORT:-${ports[1]}}
	sslport=${RGW_SSL_PORT:-${ports[2]}}
	wrongport=${ports[3]}
	rogueport=${ports[4]}
	[ -z "${RGW_PORT:-}" ] || port_free_or_die "$port" "RGW_PORT, radosgw http"
	[ -z "${RGW_SSL_PORT:-}" ] || port_free_or_die "$sslport" "RGW_SSL_PORT, radosgw https"
	printf 'RGW_PORT=%s\nRGW_SSL_PORT=%s\nMON_PORT=%s\n' "$port" "$sslport" "$monport" >"$dir/ports"

	make_tls "$dir"
	phase tls
	local fsid
	fsid=$(cat /proc/sys/kernel/random/uuid)
	write_conf "$dir" "$fsid" "$monport" "$port" "$sslport" "$wrongport" "$rogueport"

	# the mon
	ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
	monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$monport]" "$dir/monmap" >/dev/null
	ceph-mon -c "$dir/ceph.conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" \
		>"$dir/log/mon-mkfs.out" 2>&1 || { cat "$dir/log/mon-mkfs.out" >&2; die "ceph-mon --mkfs failed"; }
	start_bg "$dir" mon ceph-mon -c "$dir/ceph.conf" -i a -f
	wait_until "$TIMEOUT" ceph-mon "$dir/run/mon.pid" ceph_cli "$dir" mon stat || {
		tail -n 20 "$dir/log/mon.a.log" "$dir/log/mon.out" >&2 2>/dev/null
		cmd_stop "$dir"
		die "ceph-mon did not come up (port $monport)"
	}
	phase mon

	# the OSD (memstore: RAM only)
	local osd_uuid osd_id
	osd_uuid=$(cat /proc/sys/kernel/random/uuid)
	osd_id=$(ceph_cli "$dir" osd new "$osd_uuid" 2>>"$dir/log/ceph-cli.out") || { cmd_stop "$dir"; die "ceph osd new failed"; }
	[ "$osd_id" = 0 ] || { cmd_stop "$dir"; die "unexpected OSD id '$osd_id'"; }
	mkdir -p "$dir/osd.0"
	ceph-osd -c "$dir/ceph.conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1 ||
		{ cat "$dir/log/osd-mkfs.out" >&2; cmd_stop "$dir"; die "ceph-osd --mkfs failed"; }
	start_bg "$dir" osd ceph-osd -c "$dir/ceph.conf" -i 0 -f
	phase osd

	# the S3 users: one user with two keys (the second one for credential rotation tests), and
	# another user (for access-denied tests). radosgw-admin prints the keys: never shown.
	radosgw-admin -c "$dir/ceph.conf" user create --uid="$UID_NAME" --display-name="reportstore tests" \
		--access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" --caps="user-policy=*" \
		>/dev/null 2>>"$dir/log/radosgw-admin.out" ||
		{ cmd_stop "$dir"; die "radosgw-admin user create failed (see $dir/log/radosgw-admin.out)"; }
	radosgw-admin -c "$dir/ceph.conf" key create --uid="$UID_NAME" --key-type=s3 \
		--access-key="$ALT_ACCESS_KEY" --secret-key="$ALT_SECRET_KEY" >/dev/null 2>>"$dir/log/radosgw-admin.out" ||
		{ cmd_stop "$dir"; die "radosgw-admin key create failed"; }
	# STS AssumeRole: the user may manage roles, and the role ROLE_NAME (arn:aws:iam:::role/ROLE_NAME)
	# trusts it and may do anything in S3.
	{
		radosgw-admin -c "$dir/ceph.conf" caps add --uid="$UID_NAME" --caps="roles=*" &&
			radosgw-admin -c "$dir/ceph.conf" role create --role-name="$ROLE_NAME" --path=/ \
				--assume-role-policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/'"$UID_NAME"'"]},"Action":["sts:AssumeRole"]}]}' &&
			radosgw-admin -c "$dir/ceph.conf" role-policy put --role-name="$ROLE_NAME" --policy-name=s3-all \
				--policy-doc='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":"arn:aws:s3:::*"}]}'
	} >/dev/null 2>>"$dir/log/radosgw-admin.out" || { cmd_stop "$dir"; die "radosgw-admin could not create the STS role"; }
	phase users
	# a second storage class in the default placement (STANDARD_IA), as AWS has it
	{
		radosgw-admin -c "$dir/ceph.conf" zonegroup placement add --rgw-zonegroup=default \
			--placement-id=default-placement --storage-class=STANDARD_IA &&
			radosgw-admin -c "$dir/ceph.conf" zone placement add --rgw-zone=default \
				--placement-id=default-placement --storage-class=STANDARD_IA \
				--data-pool=default.rgw.standard-ia.data
	} >/dev/null 2>>"$dir/log/radosgw-admin.out" || { cmd_stop "$dir"; die "radosgw-admin placement add failed"; }

	phase placement
	start_gateway "$dir" || { cmd_stop "$dir"; die "radosgw did not answer on 127.0.0.1:$port"; }
	phase radosgw
	# STS: the user may ask for temporary credentials (GetSessionToken needs an IAM user policy)
	RGW_ENDPOINT="http://127.0.0.1:$port" RGW_ACCESS_KEY=$ACCESS_KEY RGW_SECRET_KEY=$SECRET_KEY \
		/usr/bin/python3 - "$HARNESS" "$UID_NAME" <<'PY' || { cmd_stop "$dir"; die "could not allow sts:GetSessionToken"; }
import json, os, sys, urllib.parse, http.client
sys.path.insert(0, sys.argv[1])
from s3front import sign_request
body = urllib.parse.urlencode({
    "Action": "PutUserPolicy", "Version": "2010-05-08", "UserName": sys.argv[2], "PolicyName": "sts",
    "PolicyDocument": json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["sts:GetSessionToken"], "Resource": "*"}]})}).encode()
u = urllib.parse.urlsplit(os.environ["RGW_ENDPOINT"])
h = sign_request("POST", "/", [], {"host": u.netloc, "content-type": "application/x-www-form-urlencoded"}, body,
                 os.environ["RGW_ACCESS_KEY"], os.environ["RGW_SECRET_KEY"], "us-east-1", service="iam")
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
c.request("POST", "/", body=body, headers=h)
r = c.getresponse()
data = r.read()
if r.status != 200:
    sys.exit("PutUserPolicy: HTTP %d %s" % (r.status, data[:300]))
PY
	phase sts
	write_env "$dir" "$port" "$sslport" "$wrongport" "$rogueport"
	say "up in $((SECONDS - t0)) s: http://127.0.0.1:$port, https://127.0.0.1:$sslport (Ceph $(sed -n 's/^RGW_VERSION=//p' "$dir/rgw.env")); env in $dir/rgw.env"
}

cmd_stop() {
	local dir=$1 n pid pids=() i
	[ -d "$dir" ] || return 0
	# radosgw first, then the OSD, then the mon: in another order a gracefully stopping
	# radosgw hangs for minutes. The OSD keeps everything in RAM and the cluster is thrown
	# away, so SIGKILL, sent to all three at once: their orderly shutdown takes 2 to 5 s
	# each, and even a killed daemon takes up to 2 s to go (restart-gateway stops radosgw
	# gracefully).
	for n in radosgw osd mon; do
		pid=$(own_pid "$dir" "$n") || continue
		kill -KILL "$pid" 2>/dev/null && pids+=("$pid")
	done
	for pid in "${pids[@]}"; do
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && say "pid $pid still there 10 s after SIGKILL"
	done
	rm -f "$dir/run/radosgw.pid" "$dir/run/osd.pid" "$dir/run/mon.pid" "$dir/rgw.env"
	return 0
}

cmd_restart_gateway() {
	local dir=$1
	[ -f "$dir/ports" ] || die "no cluster in $dir"
	own_pid "$dir" osd >/dev/null && own_pid "$dir" mon >/dev/null || die "the cluster in $dir is not running"
	stop_gracefully "$dir" radosgw
	start_gateway "$dir" || die "radosgw did not come back"
}

cmd_status() {
	local dir=$1 rc=0 n
	for n in mon osd radosgw; do
		if own_pid "$dir" "$n" >/dev/null; then echo "$n: running (pid $(cat "$dir/run/$n.pid"))"; else echo "$n: stopped"; rc=1; fi
	done
	return $rc
}

case "${1:-}" in
start) [ $# -ge 2 ] || die "usage: $0 start DIR"; cmd_start "$2" ;;
stop) [ $# -ge 2 ] || die "usage: $0 stop DIR"; [ -d "$2" ] || exit 0; cmd_stop "$(cd "$2" && pwd)" ;;
status) [ $# -ge 2 ] || die "usage: $0 status DIR"; [ -d "$2" ] || die "no cluster in $2"; cmd_status "$(cd "$2" && pwd)" ;;
restart-gateway)
	[ $# -ge 2 ] || die "usage: $0 restart-gateway DIR"
	[ -d "$2" ] || die "no cluster in $2"
	cmd_restart_gateway "$(cd "$2" && pwd)"
	;;
*) echo "usage: $0 start DIR | stop DIR | status DIR | restart-gateway DIR" >&2; exit 2 ;;
esac
