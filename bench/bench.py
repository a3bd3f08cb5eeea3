#!/usr/bin/python3
"""reportstore benchmark driver; run through bench/run.sh, which installs the
dependencies, builds the extension and starts/stops the cluster, the S3 stack
(moto) and the sink. Environment (set by run.sh):

  BENCH_MODE=full|smoke  ROOT  PGDIR  PGHOST  PGPORT  S3_URL (moto, direct)
  SINK_URL  SHM  RESULTS  NGINX_URL (optional)
"""
import concurrent.futures as cf
import hashlib
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import psycopg2

MODE = os.environ.get("BENCH_MODE", "full")
SMOKE = MODE == "smoke"
ROOT = os.environ["ROOT"]
PGDIR = os.environ["PGDIR"]
S3_URL = os.environ["S3_URL"]
SINK_URL = os.environ["SINK_URL"]
# The S3 server of the comparisons: moto (full runs) or Ceph RGW (smoke runs, test/run_all.sh: no moto
# needed); RGW gets the bench's own bucket, public-read-write so that curl's unsigned PUTs go through.
STORE = os.environ.get("BENCH_STORE", "moto")
BUCKET = os.environ.get("BENCH_BUCKET", "reports")
S3_KEY = os.environ.get("BENCH_S3_ACCESS_KEY", "bench")
S3_SECRET = os.environ.get("BENCH_S3_SECRET_KEY", "bench")
NGINX_URL = os.environ.get("NGINX_URL", "")
SHM = os.environ["SHM"]
RESULTS = os.environ["RESULTS"]
DB = "bench"
PREFIX = "smoke-" if SMOKE else ""
PY = "/usr/bin/python3"

RUNS = 1 if SMOKE else int(os.environ.get("BENCH_RUNS", "3"))
CONCURRENCY = 16  # reportstore.max_concurrency default; the script and curl use the same
BATCH_SIZE = 256  # reportstore.batch_size default
# (label, target bytes of report_data::text, reports in full mode, in smoke mode)
SIZES = [("10KiB", 10 * 1024, 4096, 64), ("256KiB", 256 * 1024, 800, 16), ("8MiB", 8 * 1024 * 1024, 32, 2)]
if SMOKE:  # the smoke run checks the harness, not the figures: the two small sizes are enough
    SIZES = SIZES[:2]
FETCHES = 10 if SMOKE else 50
DELAY_INSERTS = 5 if SMOKE else 20
PGBENCH_SCALE = 2 if SMOKE else 10
PGBENCH_T = 2 if SMOKE else int(os.environ.get("BENCH_PGBENCH_T", "20"))
SWEEP = [(16, 4), (64, 8), (256, 16), (64, 16)]

checks = []  # (name, ok, detail)
ANON_PEAK = {}  # label -> peak RssAnon of the worker sampled every 50 ms during its runs


def check(name, ok, detail=""):
    checks.append((name, bool(ok), str(detail)))
    print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + str(detail) if detail else ''}", flush=True)
    return ok


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def connect(autocommit=True):
    c = psycopg2.connect(host=os.environ["PGHOST"], port=os.environ["PGPORT"], user="postgres", dbname=DB)
    c.autocommit = autocommit
    return c


_conn = None


def q(sql, args=None, fetch=True):
    global _conn
    if _conn is None or _conn.closed:
        _conn = connect()
    with _conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if fetch and cur.description else None


def q1(sql, args=None):
    rows = q(sql, args)
    return rows[0][0] if rows else None


def median(xs):
    return statistics.median(xs) if xs else None


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ---------------------------------------------------------------- cluster, settings

def restart_cluster():
    global _conn
    if _conn is not None:
        _conn.close()
        _conn = None
    subprocess.run(["bash", f"{ROOT}/test/pgcluster.sh", "restart", PGDIR], check=True)


def worker_pid(timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'reportstore worker'")
        if pid:
            return pid
        time.sleep(0.2)
    raise RuntimeError("no reportstore worker in pg_stat_activity")


def alter(settings):
    for k, v in settings.items():
        q(f"ALTER SYSTEM SET reportstore.{k} = %s", (str(v),), fetch=False)


def reload():
    q("SELECT pg_reload_conf()")


def worker_off():
    alter({"worker_enabled": "off"})
    reload()
    # the worker reads the change at its next wait; a batch in flight finishes
    deadline = time.time() + 120
    while time.time() < deadline:
        st = q1("SELECT state FROM reportstore.worker_info()")
        if st not in ("running", "starting"):
            break
        time.sleep(0.05)
    time.sleep(0.2)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssShmem", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out


def cpu_seconds(pid):
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


# ---------------------------------------------------------------- S3 servers

def http(method, url, data=None):
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status


def moto_reset():
    """Empties the S3 server (keeps it fast and small) and recreates the bucket."""
    if STORE == "moto":
        http("POST", f"{S3_URL}/moto-api/reset", b"")
        http("PUT", f"{S3_URL}/{BUCKET}", b"")
        return
    c = s3client()
    try:
        c.head_bucket(Bucket=BUCKET)
    except botocore.exceptions.ClientError:
        c.create_bucket(Bucket=BUCKET)
        c.put_bucket_acl(Bucket=BUCKET, ACL="public-read-write")
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            c.delete_objects(Bucket=BUCKET, Delete={"Objects": keys, "Quiet": True})


def s3client():
    return boto3.client("s3", endpoint_url=S3_URL, region_name="us-east-1", aws_access_key_id=S3_KEY,
                        aws_secret_access_key=S3_SECRET,
                        config=botocore.config.Config(s3={"addressing_style": "path"}))


def moto_count(prefix="reports/"):
    n = 0
    for page in s3client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        n += page.get("KeyCount", 0)
    return n


def moto_pid():
    if STORE != "moto":
        return None  # RGW's CPU time is not measured
    with open(os.path.join(os.environ["S3DIR"], "backend.pid")) as f:
        pid = int(f.read().strip())
    # the pid file holds the session leader (exec'd into moto_server or a pyenv shim)
    try:
        kids = subprocess.run(["pgrep", "-s", str(pid)], capture_output=True, text=True).stdout.split()
        best = max((int(k) for k in kids), key=lambda p: cpu_seconds(p) or 0, default=pid)
        return best
    except Exception:
        return pid


# ---------------------------------------------------------------- data

def setup_schema():
    q("DROP SCHEMA IF EXISTS appcopy CASCADE", fetch=False)
    q("CREATE SCHEMA appcopy", fetch=False)
    # the application's own copy: no extension trigger, same columns and indexes
    q("CREATE TABLE appcopy.reports (LIKE public.reports INCLUDING ALL)", fetch=False)
    q("CREATE TABLE IF NOT EXISTS bench_src (label text, n int, report_id uuid PRIMARY KEY, report_data jsonb, "
      "created_at timestamptz)", fetch=False)
    q("INSERT INTO assessments VALUES ('a0000000-0000-4000-8000-000000000001', 'bench') ON CONFLICT DO NOTHING",
      fetch=False)


ELEM = ("jsonb_build_object('id', g, 'rule', 'RULE-' || (g %% 997), "
        "'severity', (ARRAY['low','medium','high','critical'])[g %% 4 + 1], "
        "'title', 'Finding ' || g || ' on asset ' || (g %% 101), "
        "'evidence', md5(%(label)s || i || ':' || g) || md5(g || ':' || i))")


def generate(label, size, n):
    """Deterministic reports of about `size` bytes of report_data::text."""
    q("DELETE FROM bench_src WHERE label = %s", (label,), fetch=False)
    # bytes per finding, measured
    per = q1(f"SELECT length((SELECT jsonb_agg({ELEM}) FROM generate_series(1, 1000) g)::text) / 1000.0 "
             "FROM (SELECT 1 AS i) s", {"label": label})
    k = max(1, int((size - 80) / float(per)))
    q(f"""INSERT INTO bench_src
          SELECT %(label)s, i, md5(%(label)s || ':' || i)::uuid,
                 jsonb_build_object('report', i, 'label', %(label)s,
                                    'findings', (SELECT jsonb_agg({ELEM}) FROM generate_series(1, %(k)s) g)),
                 timestamptz '2020-01-01' + i * interval '1 second'
            FROM generate_series(1, %(n)s) i""", {"label": label, "k": k, "n": n}, fetch=False)
    q("ANALYZE bench_src", fetch=False)
    total, mean = q("SELECT sum(octet_length(report_data::text)), avg(octet_length(report_data::text)) "
                    "FROM bench_src WHERE label = %s", (label,))[0]
    stored = q1("SELECT sum(pg_column_size(report_data)) FROM bench_src WHERE label = %s", (label,))
    return int(total), float(mean), int(stored)


def write_bodies(label):
    """report_data::text of each report as a file in tmpfs, for the curl ceiling."""
    d = os.path.join(SHM, label)
    os.makedirs(d, exist_ok=True)
    c = connect()
    with c.cursor(name="bodies") if not c.autocommit else c.cursor() as cur:
        cur.execute("SELECT report_id::text, report_data::text FROM bench_src WHERE label = %s ORDER BY n", (label,))
        ids = []
        for rid, body in cur:
            with open(os.path.join(d, rid + ".json"), "w") as f:
                f.write(body)
            ids.append(rid)
    c.close()
    for name, base in (("moto", S3_URL), ("sink", SINK_URL)):
        with open(os.path.join(SHM, f"{label}.{name}.curl"), "w") as f:
            for rid in ids:
                f.write(f'upload-file = "{d}/{rid}.json"\nurl = "{base}/{BUCKET}/reports/{rid}/report.json"\n')
    return ids


def load(label, schema, copies=1):
    if schema == "public":
        q("TRUNCATE public.reports, reportstore.objects, reportstore.offload_state, reportstore.delete_queue",
          fetch=False)
    else:
        q(f"TRUNCATE {schema}.reports", fetch=False)
    q(f"""INSERT INTO {schema}.reports (report_id, assessment_id, report_type, title, format, report_data, status,
                                     generated_at, created_at, updated_at)
          SELECT CASE WHEN c = 1 THEN report_id ELSE md5(report_id::text || c)::uuid END,
                 'a0000000-0000-4000-8000-000000000001', 'compliance', 'Bench ' || n, 'json', report_data,
                 'completed', created_at, created_at, created_at
            FROM bench_src, generate_series(1, %s) c WHERE label = %s""", (copies, label), fetch=False)
    q(f"VACUUM ANALYZE {schema}.reports", fetch=False)


# ---------------------------------------------------------------- the cases

def run_worker(label, n, total, endpoint, batch_size=BATCH_SIZE, concurrency=CONCURRENCY, verify=False,
               on_start=None):
    load(label, "public")
    if endpoint == S3_URL:
        moto_reset()
    alter({"endpoint": endpoint, "batch_size": batch_size, "max_concurrency": concurrency})
    alter({"worker_enabled": "on"})
    if on_start:
        on_start()
    t0 = time.monotonic()
    reload()
    deadline = t0 + (120 if SMOKE else 900)
    wpid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'reportstore worker'")
    while True:
        try:  # the worker's private memory, sampled (VmHWM also counts shared buffers it touched)
            anon = proc_status(wpid)["RssAnon"]
            ANON_PEAK[label] = max(ANON_PEAK.get(label, 0), anon)
        except (OSError, KeyError, TypeError):
            pass
        left, failing, state, err = q("SELECT reports_in_database, reports_failing, worker_state, last_error "
                                      "FROM reportstore.status")[0]
        if left == 0:
            break
        if time.monotonic() > deadline or failing:
            worker_off()
            raise RuntimeError(f"worker did not finish: {left} left, {failing} failing, {state}: {err}")
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    worker_off()
    objects, obytes = q("SELECT count(*), coalesce(sum(size), 0) FROM reportstore.objects")[0]
    ok = objects == n and int(obytes) == total
    if verify:
        check(f"worker {label} -> {'moto' if endpoint == S3_URL else 'sink'}: {n} reports offloaded, "
              f"{total} bytes recorded", ok, f"{objects} objects, {obytes} bytes")
        if endpoint == S3_URL:
            check(f"worker {label}: {n} objects in moto", moto_count() == n)
    if not ok:
        raise RuntimeError(f"worker run incomplete: {objects}/{n} objects, {obytes}/{total} bytes")
    return seconds


def run_python(label, n, total, verify=False):
    load(label, "appcopy")
    moto_reset()
    dsn = f"host={os.environ['PGHOST']} port={os.environ['PGPORT']} user=postgres dbname={DB}"
    t0 = time.monotonic()
    out = subprocess.run([PY, f"{ROOT}/bench/migrate.py", "--dsn", dsn, "--table", "appcopy.reports",
                          "--endpoint", S3_URL, "--bucket", BUCKET, "--concurrency", str(CONCURRENCY), "--batch-size", str(BATCH_SIZE)],
                         capture_output=True, text=True)
    wall = time.monotonic() - t0
    if out.returncode != 0:
        raise RuntimeError("migrate.py failed: " + out.stderr[-2000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    if verify:
        left = q1("SELECT count(*) FROM appcopy.reports WHERE minio_path IS NULL")
        check(f"python script {label}: {n} reports migrated, {total} bytes", res["migrated"] == n and
              res["bytes"] == total and left == 0, res)
        check(f"python script {label}: {n} objects in moto", moto_count() == n)
    # from its first query; interpreter + boto3 import (wall - seconds) excluded
    return res["seconds"]


def run_curl(label, n, total, target, verify=False):
    if target == "moto":
        moto_reset()
    cfg = os.path.join(SHM, f"{label}.{target}.curl")
    t0 = time.monotonic()
    out = subprocess.run(["curl", "-s", "-Z", "--parallel-max", str(CONCURRENCY), "-H", "Expect:",
                          "-H", "Content-Type: application/json", "-w", "%{http_code}\\n", "-o", "/dev/null",
                          "-K", cfg], capture_output=True, text=True)
    seconds = time.monotonic() - t0
    codes = out.stdout.split()
    ok = out.returncode == 0 and codes.count("200") == n
    if verify:
        check(f"curl {label} -> {target}: {n} PUTs answered 200", ok, f"rc={out.returncode}, "
              f"{codes.count('200')} x 200")
        if target == "moto":
            check(f"curl {label}: {n} objects in moto", moto_count() == n)
    if not ok:
        raise RuntimeError(f"curl ceiling failed: rc={out.returncode} {out.stderr[-500:]}")
    return seconds


def fetch_latency(ids, verify_md5=None):
    c = connect()
    times = []
    with c.cursor() as cur:
        for i in range(FETCHES):
            rid = ids[i % len(ids)]
            t0 = time.perf_counter()
            cur.execute("SELECT report_fetch(%s)::text", (rid,))
            body = cur.fetchone()[0]
            times.append((time.perf_counter() - t0) * 1000)
            if verify_md5 is not None and i < len(ids):
                verify_md5.append((rid, hashlib.md5(body.encode()).hexdigest()))
    c.close()
    return {"p50_ms": pct(times, 50), "p99_ms": pct(times, 99), "n": len(times)}


# ---------------------------------------------------------------- main

def machine():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    pgv = q1("SHOW server_version")
    curlv = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    try:
        moto_v = subprocess.run([os.environ.get("MOTO_PY", PY), "-c", "import moto; print(moto.__version__)"],
                                capture_output=True, text=True).stdout.strip()
    except Exception:
        moto_v = "?"
    return {"nproc": os.cpu_count(), "mem_bytes": mem, "mem_gib": round(mem / 2**30, 1), "cpu_model": cpu,
            "pg_version": pgv, "kernel": platform.release(), "curl": curlv, "moto": moto_v,
            "os": open("/etc/debian_version").read().strip(), "extension_build": os.environ.get("BENCH_BUILT", "?")}


def main():
    t_start = time.monotonic()
    result = {"mode": MODE, "runs": RUNS, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "settings": {"max_concurrency": CONCURRENCY, "batch_size": BATCH_SIZE, "batch_bytes": "64MB",
                           "compression": "none"}}
    result["machine"] = machine()
    m = result["machine"]
    log(f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, PostgreSQL {m['pg_version']}, "
        f"Debian {m['os']}; mode {MODE}, {RUNS} run(s) per case")
    setup_schema()
    if STORE == "moto":  # moto takes any credentials; RGW's come from the server's environment
        alter({"access_key_id": "bench", "secret_access_key": "bench"})
    alter({"bucket": BUCKET, "compression": "none", "naptime": "10s", "offload_delay": "0"})
    reload()

    cases = []
    fetch = {}
    memory = {}
    data = {}
    for label, size, n_full, n_smoke in SIZES:
        n = n_smoke if SMOKE else n_full
        log(f"== {label}: generating {n} reports")
        total, mean, stored = generate(label, size, n)
        data[label] = {"reports": n, "bytes": total, "mean_report_bytes": round(mean), "stored_bytes": stored}
        log(f"   {n} reports, {total / 2**20:.1f} MiB as text (mean {mean / 1024:.1f} KiB), "
            f"{stored / 2**20:.1f} MiB stored (TOAST)")
        ids = write_bodies(label)
        restart_cluster()   # a fresh worker: VmHWM is per size
        pid = worker_pid()

        if label == "10KiB" and NGINX_URL:
            load(label, "public")
            c = connect()
            with c.cursor() as cur:
                cur.execute("SET reportstore.endpoint = %s", (NGINX_URL,))
                try:
                    cur.execute("SELECT report_offload(%s)", (ids[0],))
                    res = {"accepted": True, "detail": cur.fetchone()[0]}
                except psycopg2.Error as e:
                    res = {"accepted": False, "detail": (e.pgerror or str(e)).strip().splitlines()[0],
                           "errdetail": getattr(e.diag, "message_detail", None)}
            c.close()
            result["nginx_dav_probe"] = res
            log(f"   nginx DAV as sink: {res}")
            check("nginx DAV sink probe ran (reportstore refuses it: no MD5 ETag, no x-amz-meta-sha256)",
                  not res["accepted"], res["detail"])

        # report_fetch from the database
        load(label, "public")
        fetch[label] = {"database": fetch_latency(ids)}
        times = {k: [] for k in ("worker_moto", "python_moto", "curl_moto", "worker_sink", "curl_sink")}
        for r in range(RUNS):
            verify = r == 0
            times["worker_moto"].append(run_worker(label, n, total, S3_URL, verify=verify))
            log(f"   run {r + 1}: worker->moto {times['worker_moto'][-1]:.2f}s")
            if r == 0:
                md5s = []
                fetch[label]["offloaded"] = fetch_latency(ids, md5s)
                src = dict(q("SELECT report_id::text, md5(report_data::text) FROM bench_src WHERE label = %s",
                             (label,)))
                check(f"report_fetch {label}: offloaded reports come back byte for byte",
                      all(src[rid] == h for rid, h in md5s), f"{len(md5s)} compared")
            times["python_moto"].append(run_python(label, n, total, verify=verify))
            times["curl_moto"].append(run_curl(label, n, total, "moto", verify=verify))
            times["worker_sink"].append(run_worker(label, n, total, SINK_URL, verify=verify))
            times["curl_sink"].append(run_curl(label, n, total, "sink", verify=verify))
            log(f"   run {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()))
        memory[label] = proc_status(pid)
        memory[label]["pid"] = pid
        memory[label]["RssAnon_peak_sampled"] = ANON_PEAK.get(label, 0)
        memory[label]["largest_report_bytes"] = q1(
            "SELECT max(octet_length(report_data::text)) FROM bench_src WHERE label = %s", (label,))
        log(f"   worker memory: VmHWM {memory[label]['VmHWM'] / 2**20:.1f} MiB, "
            f"RssShmem {memory[label]['RssShmem'] / 2**20:.1f} MiB, "
            f"RssAnon peak (sampled) {memory[label]['RssAnon_peak_sampled'] / 2**20:.1f} MiB")
        for k, v in times.items():
            approach, target = k.split("_")
            med = median(v)
            cases.append({"size": label, "approach": approach, "server": target, "reports": n, "bytes": total,
                          "runs_s": [round(x, 4) for x in v], "median_s": round(med, 4),
                          "mib_s": round(total / 2**20 / med, 2), "reports_s": round(n / med, 1)})
        fetch[label]["database"]["report_bytes"] = round(mean)
        check(f"{label}: every figure positive and finite",
              all(c["median_s"] > 0 and math.isfinite(c["mib_s"]) for c in cases if c["size"] == label))
    result["data"] = data
    result["cases"] = cases
    result["fetch_latency"] = fetch
    result["worker_memory"] = memory

    # ------------------------------------------------ batch_size / max_concurrency sweep (sink and moto)
    sweep = []
    sweep_sizes = ["10KiB", "256KiB"] if not SMOKE else ["256KiB"]
    sweep_settings = SWEEP if not SMOKE else [(256, 16)]
    sweep_servers = (("sink", SINK_URL), ("moto", S3_URL)) if not SMOKE else (("sink", SINK_URL),)
    for label in sweep_sizes:
        n, total = data[label]["reports"], data[label]["bytes"]
        for server, url in sweep_servers:
            for bs, mc in sweep_settings:
                ts = [run_worker(label, n, total, url, batch_size=bs, concurrency=mc)]
                med = median(ts)
                sweep.append({"size": label, "server": server, "batch_size": bs, "max_concurrency": mc,
                              "runs_s": [round(x, 4) for x in ts], "median_s": round(med, 4),
                              "mib_s": round(total / 2**20 / med, 2), "reports_s": round(n / med, 1)})
                log(f"   sweep {label} {server} batch_size={bs} max_concurrency={mc}: {med:.2f}s, "
                    f"{total / 2**20 / med:.1f} MiB/s")
    result["sweep"] = sweep
    check("sweep ran", len(sweep) == len(sweep_sizes) * len(sweep_servers) * len(sweep_settings))

    # ------------------------------------------------ new-report delay (idle worker, moto)
    log("== new-report delay")
    load("10KiB", "public")
    q("TRUNCATE public.reports, reportstore.objects, reportstore.offload_state", fetch=False)
    moto_reset()
    alter({"endpoint": S3_URL, "batch_size": BATCH_SIZE, "max_concurrency": CONCURRENCY, "worker_enabled": "on"})
    reload()
    time.sleep(1.0)
    body = q1("SELECT report_data::text FROM bench_src WHERE label = '10KiB' ORDER BY n LIMIT 1")
    ins, poll = connect(), connect()
    delays = []
    for i in range(DELAY_INSERTS):
        rid = q1("SELECT gen_random_uuid()::text")
        with ins.cursor() as cur:
            cur.execute("INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, "
                        "status, generated_at) VALUES (%s, 'a0000000-0000-4000-8000-000000000001', 'executive', "
                        "'new', 'json', %s::jsonb, 'completed', now())", (rid, body))
        t0 = time.perf_counter()  # autocommit: the INSERT has committed
        with poll.cursor() as cur:
            while True:
                cur.execute("SELECT minio_path IS NOT NULL FROM reports WHERE report_id = %s", (rid,))
                if cur.fetchone()[0]:
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("new report not offloaded within 30 s")
                time.sleep(0.005)
        delays.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.1)
    ins.close()
    poll.close()
    worker_off()
    result["new_report_delay"] = {"n": len(delays), "p50_ms": pct(delays, 50), "p95_ms": pct(delays, 95),
                                  "max_ms": max(delays), "poll_interval_ms": 5}
    log(f"   delay p50 {pct(delays, 50):.1f} ms, p95 {pct(delays, 95):.1f} ms")
    check("new reports offloaded after commit", len(delays) == DELAY_INSERTS)

    # ------------------------------------------------ pgbench with and without the worker migrating
    log("== pgbench")
    env = dict(os.environ, PGUSER="postgres")
    subprocess.run(["pgbench", "-i", "-q", "-s", str(PGBENCH_SCALE), DB], env=env, check=True, capture_output=True)

    def pgbench():
        out = subprocess.run(["pgbench", "-n", "-c", "4", "-j", "2", "-T", str(PGBENCH_T), DB], env=env,
                             capture_output=True, text=True, check=True).stdout
        return float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out).group(1))

    label = "256KiB"
    mib_s = next(c["mib_s"] for c in cases if c["size"] == label and c["approach"] == "worker" and
                 c["server"] == "moto")
    copies = max(1, math.ceil(mib_s * PGBENCH_T * 1.3 / (data[label]["bytes"] / 2**20)))
    pg_runs = []
    mpid = moto_pid()
    for r in range(RUNS):
        q("CHECKPOINT", fetch=False)
        base = pgbench()
        load(label, "public", copies)
        q("CHECKPOINT", fetch=False)
        moto_reset()
        alter({"endpoint": S3_URL})
        wpid = worker_pid()
        cpu0 = (cpu_seconds(wpid), cpu_seconds(mpid))
        alter({"worker_enabled": "on"})
        reload()
        tps = pgbench()
        cpu1 = (cpu_seconds(wpid), cpu_seconds(mpid))
        left = q1("SELECT reports_in_database FROM reportstore.status")
        worker_off()
        pg_runs.append({"tps_alone": base, "tps_with_worker": tps, "reports_left_at_end": left,
                        "reports_loaded": copies * data[label]["reports"],
                        "worker_cpu_s": round(cpu1[0] - cpu0[0], 2) if cpu0[0] is not None else None,
                        "moto_cpu_s": round(cpu1[1] - cpu0[1], 2) if cpu0[1] is not None else None})
        log(f"   run {r + 1}: TPS alone {base:.0f}, with the worker migrating {tps:.0f} "
            f"({left} reports still pending at the end: migrating throughout = {left > 0})")
    q("TRUNCATE public.reports, reportstore.objects", fetch=False)
    alone = median([p["tps_alone"] for p in pg_runs])
    withw = median([p["tps_with_worker"] for p in pg_runs])
    result["pgbench"] = {"clients": 4, "seconds": PGBENCH_T, "scale": PGBENCH_SCALE, "size": label, "runs": pg_runs,
                         "tps_alone": alone, "tps_with_worker": withw,
                         "drop_percent": round(100 * (alone - withw) / alone, 1)}
    check("pgbench ran", alone > 0 and withw > 0)

    # ------------------------------------------------ profile of the worker (perf)
    profiles = {}
    for label in (["256KiB"] if SMOKE else ["10KiB", "256KiB"]):
        n, total = data[label]["reports"], data[label]["bytes"]
        wpid = worker_pid()
        perf_data = os.path.join(SHM, f"perf-{label}.data")
        holder = {}

        def start_perf():
            holder["p"] = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g",
                                            "-p", str(wpid), "-o", perf_data],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(0.5)

        try:
            secs = run_worker(label, n, total, SINK_URL, on_start=start_perf)
            holder["p"].send_signal(signal.SIGINT)
            holder["p"].wait(timeout=60)
            rep = subprocess.run(["perf", "report", "-i", perf_data, "--no-children", "--sort", "dso,symbol",
                                  "--stdio", "-g", "none", "--percent-limit", "0.7"],
                                 capture_output=True, text=True).stdout
            lines = [l for l in rep.splitlines() if l.strip() and not l.startswith("#")]
            outfile = os.path.join(RESULTS, f"{PREFIX}profile-{label}.txt")
            with open(outfile, "w") as f:
                f.write(f"# perf record -e cpu-clock -g -p <worker> during a {label} migration to the sink "
                        f"({n} reports, {secs:.2f}s)\n")
                f.write(rep)
            children = subprocess.run(["perf", "report", "-i", perf_data, "--children", "--sort", "symbol",
                                       "--stdio", "-g", "none", "--percent-limit", "3"],
                                      capture_output=True, text=True).stdout
            with open(os.path.join(RESULTS, f"{PREFIX}profile-{label}-inclusive.txt"), "w") as f:
                f.write(children)
            profiles[label] = {"seconds": round(secs, 3), "top_self": lines[:25]}
        except Exception as e:  # perf may be unavailable in a VM
            profiles[label] = {"error": str(e)}
    result["profile"] = profiles
    check("worker profiled with perf", all("top_self" in p for p in profiles.values()), list(profiles))

    # ------------------------------------------------ targets
    targets = []

    def by(label, approach, server):
        return next(c for c in cases if c["size"] == label and c["approach"] == approach and c["server"] == server)

    for label, _, _, _ in SIZES:
        w, p, c = by(label, "worker", "moto"), by(label, "python", "moto"), by(label, "curl", "moto")
        ws, cs = by(label, "worker", "sink"), by(label, "curl", "sink")
        ratio = w["mib_s"] / p["mib_s"]
        targets.append({"target": f"{label}: worker >= 3x the Python script (moto)", "measured": f"{ratio:.2f}x",
                        "value": round(ratio, 2), "met": ratio >= 3})
        frac = w["mib_s"] / c["mib_s"]
        targets.append({"target": f"{label}: worker >= 80% of the curl ceiling (moto)",
                        "measured": f"{100 * frac:.0f}%", "value": round(frac, 3), "met": frac >= 0.8})
        frac_s = ws["mib_s"] / cs["mib_s"]
        targets.append({"target": f"{label}: worker >= 80% of the curl ceiling (sink)",
                        "measured": f"{100 * frac_s:.0f}%", "value": round(frac_s, 3), "met": frac_s >= 0.8})
    d = result["new_report_delay"]
    targets.append({"target": "new-report delay p95 < 1 s", "measured": f"{d['p95_ms']:.0f} ms",
                    "value": d["p95_ms"], "met": d["p95_ms"] < 1000})
    pb = result["pgbench"]
    targets.append({"target": "pgbench TPS drop <= 10% with the worker migrating",
                    "measured": f"{pb['drop_percent']:.1f}%", "value": pb["drop_percent"],
                    "met": pb["drop_percent"] <= 10})
    for label, mem in memory.items():
        limit = 64 * 2**20 + CONCURRENCY * mem["largest_report_bytes"]
        private = mem["RssAnon_peak_sampled"]
        targets.append({"target": f"{label}: worker private RSS (RssAnon peak) < 64 MiB + {CONCURRENCY} x largest "
                                  f"report ({limit / 2**20:.0f} MiB)",
                        "measured": f"{private / 2**20:.1f} MiB", "value": private, "met": private < limit})
        targets.append({"target": f"{label}: worker VmHWM (incl. shared buffers touched) < {limit / 2**20:.0f} MiB",
                        "measured": f"{mem['VmHWM'] / 2**20:.1f} MiB (RssShmem {mem['RssShmem'] / 2**20:.0f} MiB)",
                        "value": mem["VmHWM"], "met": mem["VmHWM"] < limit})
    result["targets"] = targets
    result["elapsed_s"] = round(time.monotonic() - t_start, 1)

    # ------------------------------------------------ output
    os.makedirs(RESULTS, exist_ok=True)
    name = "latest.json" if not SMOKE else "smoke.json"
    with open(os.path.join(RESULTS, name), "w") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(RESULTS, "plot.dat" if not SMOKE else "smoke-plot.dat"), "w") as f:
        f.write("# size worker_moto python_moto curl_moto worker_sink curl_sink (MiB/s)\n")
        for label, _, _, _ in SIZES:
            f.write(label + " " + " ".join(str(by(label, a, s)["mib_s"]) for a, s in
                                          (("worker", "moto"), ("python", "moto"), ("curl", "moto"),
                                           ("worker", "sink"), ("curl", "sink"))) + "\n")
    table = render(result)
    with open(os.path.join(RESULTS, "latest.md" if not SMOKE else "smoke.md"), "w") as f:
        f.write(table)
    print(table)
    check("result file written", os.path.getsize(os.path.join(RESULTS, name)) > 0)


def render(r):
    m = r["machine"]
    out = [f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB RAM, PostgreSQL {m['pg_version']}, "
           f"Debian {m['os']}, kernel {m['kernel']}, moto {m['moto']}; mode {r['mode']}, median of {r['runs']} "
           f"run(s); extension built from {m['extension_build']}; max_concurrency {r['settings']['max_concurrency']}, batch_size {r['settings']['batch_size']}.",
           "", "Migration throughput (MiB/s of report_data::text; reports/s in parentheses):", "",
           "| size | reports | MiB | worker -> moto | Python script -> moto | curl ceiling -> moto | worker -> sink "
           "| curl ceiling -> sink |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, _, _, _ in SIZES:
        cs = {(c["approach"], c["server"]): c for c in r["cases"] if c["size"] == label}
        d = r["data"][label]
        cells = [f"{cs[k]['mib_s']:.1f} ({cs[k]['reports_s']:.0f}/s)" for k in
                 (("worker", "moto"), ("python", "moto"), ("curl", "moto"), ("worker", "sink"), ("curl", "sink"))]
        out.append(f"| {label} | {d['reports']} | {d['bytes'] / 2**20:.0f} | " + " | ".join(cells) + " |")
    out += ["", "report_fetch latency (psycopg2, `SELECT report_fetch(id)::text`, ms):", "",
            "| size | in database p50 | p99 | offloaded (moto) p50 | p99 |", "| --- | ---: | ---: | ---: | ---: |"]
    for label, f in r["fetch_latency"].items():
        out.append(f"| {label} | {f['database']['p50_ms']:.2f} | {f['database']['p99_ms']:.2f} | "
                   f"{f['offloaded']['p50_ms']:.2f} | {f['offloaded']['p99_ms']:.2f} |")
    d = r["new_report_delay"]
    out += ["", f"New-report delay (commit -> minio_path set, idle worker, moto, {d['n']} inserts of 10 KiB): "
                f"p50 {d['p50_ms']:.1f} ms, p95 {d['p95_ms']:.1f} ms, max {d['max_ms']:.1f} ms."]
    pb = r["pgbench"]
    out += ["", f"pgbench (-c 4 -j 2 -T {pb['seconds']}, scale {pb['scale']}): {pb['tps_alone']:.0f} TPS alone, "
                f"{pb['tps_with_worker']:.0f} TPS with the worker migrating {pb['size']} reports to moto "
                f"(drop {pb['drop_percent']:.1f}%). Per run: " +
            "; ".join(f"{p['tps_alone']:.0f} -> {p['tps_with_worker']:.0f} (worker CPU {p['worker_cpu_s']} s, "
                      f"moto CPU {p['moto_cpu_s']} s, {p['reports_left_at_end']} left)" for p in pb["runs"])]
    out += ["", "Worker memory (from /proc/<pid>/status after all runs of a size; fresh worker per size):", "",
            "| size | largest report | RssAnon peak (sampled every 50 ms) | VmHWM | of which shared memory (RssShmem) "
            "| target |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for label, mem in r["worker_memory"].items():
        limit = 64 * 2**20 + r["settings"]["max_concurrency"] * mem["largest_report_bytes"]
        out.append(f"| {label} | {mem['largest_report_bytes'] / 1024:.0f} KiB | "
                   f"{mem.get('RssAnon_peak_sampled', 0) / 2**20:.1f} MiB | {mem['VmHWM'] / 2**20:.1f} MiB | "
                   f"{mem['RssShmem'] / 2**20:.1f} MiB | < {limit / 2**20:.0f} MiB |")
    out += ["", "batch_size / max_concurrency sweep (worker, one run per setting; MiB/s):", "",
            "| size | server | batch_size | max_concurrency | MiB/s | reports/s |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for s in r["sweep"]:
        out.append(f"| {s['size']} | {s['server']} | {s['batch_size']} | {s['max_concurrency']} | {s['mib_s']:.1f} | "
                   f"{s['reports_s']:.0f} |")
    out += ["", "Targets:", "", "| target | measured | met |", "| --- | ---: | --- |"]
    for t in r["targets"]:
        out.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else '**NO**'} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        import traceback
        traceback.print_exc()
        check("benchmark completed", False, e)
    passed = sum(1 for c in checks if c[1])
    failed = len(checks) - passed
    print(f"bench.py checks: {passed} passed, {failed} failed")
    with open(os.path.join(RESULTS, "checks.txt"), "w") as f:
        f.write(f"{passed} {failed}\n")
    sys.exit(1 if failed else 0)
