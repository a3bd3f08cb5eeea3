#!/usr/bin/env bash
# Local S3 test stack: an S3 server (Ceph RADOS Gateway by default; moto or
# s3rver on request) behind s3front.py, which verifies the SigV4 signature of
# every request and injects faults.
#
#   test/harness/s3stack.sh start DIR [PORT]   # front on PORT (default: a free port)
#   test/harness/s3stack.sh stop DIR           # idempotent, also after a failed start
#   test/harness/s3stack.sh status DIR
#   test/harness/s3stack.sh restart-backend DIR  # stop and start the S3 server only
#                                                # (rgw: radosgw, objects kept)
#
# Environment:
#   S3_BACKEND=rgw|moto|s3rver    backend (default rgw: test/harness/rgw.sh, the front
#                                 in pass-through mode, RGW checks every signature too)
#   S3_RGW_DIR=DIR                rgw only: use the Ceph RGW already running in DIR (rgw.sh start
#                                 DIR, e.g. another stack's DIR/rgw) instead of starting one; stop
#                                 leaves it running, restart-backend restarts its radosgw
#   S3_STACK_BUCKET=NAME          the bucket to create and name in s3.env (default reports)
#   S3_SESSION_TOKEN=...          moto/s3rver only: the front requires this session token
#   S3_STACK_TIMEOUT=30           seconds to wait for each service
#
# After start, DIR/s3.env holds S3_ENDPOINT, S3_CONTROL, S3_ACCESS_KEY,
# S3_SECRET_KEY, S3_REGION, S3_BUCKET, S3_BACKEND_ENDPOINT (and more).
set -u

HARNESS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="$HARNESS/.cache"
ACCESS_KEY="rstest-access-key"
SECRET_KEY="rstest-SECRET-do-not-log-7f3a9c"
REGION="us-east-1"
BUCKET="${S3_STACK_BUCKET:-reports}"
TIMEOUT="${S3_STACK_TIMEOUT:-30}"

die() { echo "s3stack: $*" >&2; exit 1; }
say() { echo "s3stack: $*" >&2; }

front_python() {
    if [ -x /usr/bin/python3 ]; then echo /usr/bin/python3; else command -v python3; fi
}

# Prints the command (one word per line) that runs moto, or fails.
find_moto() {
    if command -v moto_server >/dev/null 2>&1 && moto_server --help >/dev/null 2>&1; then
        echo moto_server
        return 0
    fi
    local py
    for py in "$(command -v python3 2>/dev/null)" /usr/bin/python3; do
        [ -n "$py" ] && [ -x "$py" ] || continue
        if "$py" -c 'import moto.server' >/dev/null 2>&1; then
            printf '%s\n-m\nmoto.server\n' "$py"
            return 0
        fi
    done
    return 1
}

ensure_s3rver() {
    local js="$CACHE/npm-s3rver/node_modules/s3rver/bin/s3rver.js"
    if [ ! -f "$js" ]; then
        command -v npm >/dev/null 2>&1 || return 1
        command -v node >/dev/null 2>&1 || return 1
        mkdir -p "$CACHE/npm-s3rver"
        say "installing s3rver@3 into $CACHE/npm-s3rver (once)"
        npm install --no-audit --no-fund --prefix "$CACHE/npm-s3rver" s3rver@3 \
            >"$CACHE/npm-s3rver.log" 2>&1 || { cat "$CACHE/npm-s3rver.log" >&2; return 1; }
    fi
    [ -f "$js" ] && echo "$js"
}

port_busy() {
    ! /usr/bin/python3 "$HARNESS/freeport.py" --check "$1" 2>/dev/null
}

free_port() {
    /usr/bin/python3 "$HARNESS/freeport.py" 1
}

# start_bg DIR NAME CMD...: run CMD in its own session, pid in DIR/NAME.pid
start_bg() {
    local dir="$1" name="$2"; shift 2
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$dir/$name.pid" "$@" \
        >"$dir/$name.log" 2>&1 </dev/null &
    local i
    for i in $(seq 1 50); do
        [ -s "$dir/$name.pid" ] && return 0
        sleep 0.1
    done
    return 1
}

alive() {
    local pidfile="$1"
    [ -s "$pidfile" ] || return 1
    kill -0 "$(cat "$pidfile")" 2>/dev/null
}

wait_http() {  # wait_http URL PIDFILE WHAT
    local url="$1" pidfile="$2" what="$3" deadline=$((SECONDS + TIMEOUT))
    while [ $SECONDS -lt $deadline ]; do
        if ! alive "$pidfile"; then
            say "$what exited during startup"
            return 1
        fi
        if curl -s -o /dev/null --max-time 2 "$url"; then
            return 0
        fi
        sleep 0.2
    done
    say "$what did not answer at $url within ${TIMEOUT}s"
    return 1
}

stop_one() {  # stop_one DIR NAME PATTERN
    local pidfile="$1/$2.pid" pattern="$3" pid i
    [ -s "$pidfile" ] || { rm -f "$pidfile"; return 0; }
    pid="$(cat "$pidfile")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qE -- "$pattern"; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
            for i in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                say "$2 (pid $pid) did not stop on SIGTERM, killing"
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
            fi
            # stragglers of the same process group (e.g. children of a shim)
            kill -KILL -- "-$pid" 2>/dev/null || true
        else
            say "pid $pid in $pidfile is not $2 any more; not touching it"
        fi
    fi
    rm -f "$pidfile"
}

cmd_stop() {
    local dir="$1"
    [ -d "$dir" ] || return 0
    stop_one "$dir" front s3front.py
    stop_one "$dir" backend "moto|s3rver"
    if [ -d "$dir/rgw" ]; then bash "$HARNESS/rgw.sh" stop "$dir/rgw" || true; fi
    rm -f "$dir/s3.env" "$dir/rgw.shared"  # a shared RGW (S3_RGW_DIR) keeps running
    return 0
}

cmd_start() {
    local dir="$1" port="${2:-}"
    mkdir -p "$dir" || die "cannot create $dir"
    dir="$(cd "$dir" && pwd)"
    if alive "$dir/front.pid" || alive "$dir/backend.pid" || [ -f "$dir/rgw/rgw.env" ] || [ -f "$dir/rgw.shared" ]; then
        die "a stack is already running in $dir (run: $0 stop $dir)"
    fi
    rm -f "$dir/front.pid" "$dir/backend.pid" "$dir/s3.env"
    if [ -n "$port" ]; then
        port_busy "$port" && die "port $port (the S3 front) is already in use"
    else
        port="$(free_port)" || die "could not find a free port"
    fi

    local want="${S3_BACKEND:-rgw}" backend="" moto_cmd=() js bport="" backend_url
    local backend_ak=S3RVER backend_sk=S3RVER access_key="$ACCESS_KEY" secret_key="$SECRET_KEY"
    local alt_ak=rstest-alt-access-key alt_sk=rstest-ALT-secret-not-a-real-one front_args=()
    case "$want" in
        rgw)
            [ -z "${S3_SESSION_TOKEN:-}" ] ||
                die "S3_SESSION_TOKEN does not work with RGW (which checks tokens itself): get one from its STS"
            backend=rgw
            ;;
        moto)
            mapfile -t moto_cmd < <(find_moto) && [ ${#moto_cmd[@]} -gt 0 ] ||
                die "S3_BACKEND=moto but no moto_server / python moto found"
            backend=moto
            ;;
        s3rver)
            js="$(ensure_s3rver)" || die "s3rver could not be installed"
            backend=s3rver
            ;;
        *) die "S3_BACKEND must be rgw, moto or s3rver (got '$want')" ;;
    esac

    case "$backend" in
        rgw)
            local rgw_dir="$dir/rgw"
            if [ -n "${S3_RGW_DIR:-}" ]; then
                rgw_dir="$(cd "$S3_RGW_DIR" 2>/dev/null && pwd)" || die "S3_RGW_DIR=$S3_RGW_DIR does not exist"
                bash "$HARNESS/rgw.sh" status "$rgw_dir" >/dev/null 2>&1 ||
                    die "S3_RGW_DIR=$S3_RGW_DIR: no RGW running there"
                echo "$rgw_dir" >"$dir/rgw.shared"
                say "sharing the Ceph RGW of $rgw_dir"
            else
                RGW_ACCESS_KEY="$ACCESS_KEY" RGW_SECRET_KEY="$SECRET_KEY" RGW_TIMEOUT="$TIMEOUT" \
                    bash "$HARNESS/rgw.sh" start "$rgw_dir" || { cmd_stop "$dir"; die "could not start Ceph RGW"; }
            fi
            # shellcheck disable=SC1091
            . "$rgw_dir/rgw.env"
            [ "$RGW_SECRET_KEY" = "$SECRET_KEY" ] && [ "$RGW_ACCESS_KEY" = "$ACCESS_KEY" ] ||
                { cmd_stop "$dir"; die "the RGW in $rgw_dir has other keys than this stack"; }
            backend_url="$RGW_ENDPOINT"
            backend_ak="$RGW_ACCESS_KEY" backend_sk="$RGW_SECRET_KEY"
            alt_ak="$RGW_ALT_ACCESS_KEY" alt_sk="$RGW_ALT_SECRET_KEY"
            front_args=(--pass-through)
            ;;
        moto)
            bport="$(free_port)" || die "could not find a free port"
            start_bg "$dir" backend "${moto_cmd[@]}" -H 127.0.0.1 -p "$bport" \
                || { cmd_stop "$dir"; die "could not start moto"; }
            ;;
        s3rver)
            bport="$(free_port)" || die "could not find a free port"
            mkdir -p "$dir/s3rver-data"
            start_bg "$dir" backend node "$js" -d "$dir/s3rver-data" -a 127.0.0.1 -p "$bport" \
                --no-vhost-buckets || { cmd_stop "$dir"; die "could not start s3rver"; }
            ;;
    esac
    if [ -n "$bport" ]; then
        backend_url="http://127.0.0.1:$bport"
        wait_http "$backend_url/" "$dir/backend.pid" "$backend backend" \
            || { tail -20 "$dir/backend.log" >&2; cmd_stop "$dir"; die "backend failed (port $bport)"; }
    fi

    local py token_args=()
    py="$(front_python)"
    if [ -n "${S3_SESSION_TOKEN:-}" ]; then
        token_args=(--session-token "$S3_SESSION_TOKEN")
    fi
    # the secrets go through the environment, not the command line (ps)
    S3FRONT_SECRET_KEY="$secret_key" start_bg "$dir" front "$py" "$HARNESS/s3front.py" \
        --port "$port" --backend "$backend_url" "${front_args[@]}" \
        --access-key "$access_key" --region "$REGION" "${token_args[@]}" \
        --log "$dir/s3front.log" \
        || { cmd_stop "$dir"; die "could not start s3front"; }
    wait_http "http://127.0.0.1:$port/__control/stats" "$dir/front.pid" "s3front" \
        || { tail -20 "$dir/front.log" >&2; cmd_stop "$dir"; die "s3front failed (port $port)"; }

    if ! S3FRONT_SECRET_KEY="$secret_key" "$py" "$HARNESS/s3front.py" \
            --create-bucket "$BUCKET" --endpoint "http://127.0.0.1:$port" \
            --access-key "$access_key" --region "$REGION" "${token_args[@]}" >&2; then
        cmd_stop "$dir"
        die "could not create bucket $BUCKET"
    fi
    curl -s -o /dev/null -X POST "http://127.0.0.1:$port/__control/reset" \
        || { cmd_stop "$dir"; die "control API not answering"; }

    {
        echo "# written by test/harness/s3stack.sh; source this file"
        printf 'S3_ENDPOINT=%q\n' "http://127.0.0.1:$port"
        printf 'S3_CONTROL=%q\n' "http://127.0.0.1:$port/__control"
        printf 'S3_ACCESS_KEY=%q\n' "$access_key"
        printf 'S3_SECRET_KEY=%q\n' "$secret_key"
        printf 'S3_ALT_ACCESS_KEY=%q\n' "$alt_ak"
        printf 'S3_ALT_SECRET_KEY=%q\n' "$alt_sk"
        printf 'S3_REGION=%q\n' "$REGION"
        printf 'S3_BUCKET=%q\n' "$BUCKET"
        printf 'S3_BACKEND_ENDPOINT=%q\n' "$backend_url"
        printf 'S3_BACKEND_ACCESS_KEY=%q\n' "$backend_ak"
        printf 'S3_BACKEND_SECRET_KEY=%q\n' "$backend_sk"
        printf 'S3_BACKEND=%q\n' "$backend"
        printf 'S3_SESSION_TOKEN=%q\n' "${S3_SESSION_TOKEN:-}"
        printf 'S3_STACK_DIR=%q\n' "$dir"
        echo "export S3_ENDPOINT S3_CONTROL S3_ACCESS_KEY S3_SECRET_KEY S3_ALT_ACCESS_KEY S3_ALT_SECRET_KEY S3_REGION S3_BUCKET S3_BACKEND_ENDPOINT S3_BACKEND_ACCESS_KEY S3_BACKEND_SECRET_KEY S3_BACKEND S3_SESSION_TOKEN S3_STACK_DIR"
        if [ "$backend" = rgw ]; then
            grep -v '^#' "$(rgw_dir_of "$dir")/rgw.env"
        fi
    } >"$dir/s3.env.tmp" && mv "$dir/s3.env.tmp" "$dir/s3.env"
    say "up: front http://127.0.0.1:$port ($backend backend at $backend_url); env in $dir/s3.env"
}

# The RGW directory of a stack: its own DIR/rgw, or the shared one (S3_RGW_DIR at start).
rgw_dir_of() {
    if [ -f "$1/rgw.shared" ]; then cat "$1/rgw.shared"; else echo "$1/rgw"; fi
}

cmd_restart_backend() {
    local dir="$1"
    [ -f "$dir/s3.env" ] || die "no stack running in $dir"
    if [ -d "$dir/rgw" ] || [ -f "$dir/rgw.shared" ]; then
        bash "$HARNESS/rgw.sh" restart-gateway "$(rgw_dir_of "$dir")"
    else
        die "restart-backend works with the rgw backend only (moto and s3rver: stop and start the stack)"
    fi
}

cmd_status() {
    local dir="$1" rc=0
    if [ -d "$dir/rgw" ] || [ -f "$dir/rgw.shared" ]; then
        bash "$HARNESS/rgw.sh" status "$(rgw_dir_of "$dir")" || rc=1
    else
        if alive "$dir/backend.pid"; then echo "backend: running (pid $(cat "$dir/backend.pid"))"
        else echo "backend: stopped"; rc=1; fi
    fi
    if alive "$dir/front.pid"; then echo "front: running (pid $(cat "$dir/front.pid"))"
    else echo "front: stopped"; rc=1; fi
    return $rc
}

case "${1:-}" in
    start) [ $# -ge 2 ] || die "usage: $0 start DIR [PORT]"; cmd_start "$2" "${3:-}" ;;
    stop) [ $# -ge 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
    status) [ $# -ge 2 ] || die "usage: $0 status DIR"; cmd_status "$2" ;;
    restart-backend) [ $# -ge 2 ] || die "usage: $0 restart-backend DIR"; cmd_restart_backend "$2" ;;
    *) echo "usage: $0 start DIR [PORT] | stop DIR | status DIR | restart-backend DIR" >&2; exit 2 ;;
esac
