"""reportstore against the limits (run by bench/limits.sh, which starts the servers).

1. Migration throughput of the worker (1 and 2 workers) at 10 KiB, 256 KiB and 8 MiB
   against three limits, each measured on the same rows:
   - the database floor: COPY (SELECT report_data::text FROM reports) TO '/dev/null'
     in one backend, what any reader of these rows pays;
   - the write floor: the UPDATE and INSERT that recording the offloads needs, set-based
     in one transaction (rolled back, triggers off), which no offload can avoid;
   - the network ceiling: curl -Z --parallel-max 16 PUTting the same texts from tmpfs.
   The S3 server is the sink (bench/sink.cpp), so that the S3 server's own cost does not
   count. Each figure is the better of two runs.
2. report_fetch_many() against one report_fetch() after another, on Ceph RGW.
3. Peak backend memory (RssAnon) of report_offload, report_fetch, report_fetch_many and
   recall of one report of 10, 100 and 500 MB of text, on Ceph RGW.
4. pgbench (4 clients, the default TPC-B-like script) alone and while the worker migrates
   256 KiB reports to the sink at several reportstore.max_rate caps: the TPS drop and the
   migration rate at each cap.

Writes OUT/limits.json and OUT/limits.md; prints the tables. Nothing is asserted.
"""
import base64
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB = "limits"
QUICK = os.environ.get("LIMITS_QUICK") == "1"
ASSESSMENT = "a0000000-0000-4000-8000-000000000001"
# (label, findings per report, reports): a finding is about 170 bytes of text
SIZES = [("10 KiB", 60, 4000), ("256 KiB", 1540, 400), ("8 MiB", 49000, 24)]
MEMORY_MB = [10, 100, 500]
if QUICK:
    SIZES, MEMORY_MB = SIZES[:2], [10, 100]


def say(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def connect(dbname=DB):
    c = psycopg2.connect(host=os.environ["PGHOST"], port=os.environ["PGPORT"], user="postgres", dbname=dbname)
    c.autocommit = True
    return c


def q(c, sql, args=None):
    with c.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else None


def restart():
    """The server's credentials are RGW's own keys (bench/limits.sh), passed again at each start."""
    e = dict(os.environ, S3_ACCESS_KEY=os.environ["S3_BACKEND_ACCESS_KEY"],
             S3_SECRET_KEY=os.environ["S3_BACKEND_SECRET_KEY"])
    subprocess.run([os.path.join(ROOT, "test", "pgcluster.sh"), "restart", os.environ["PGHOST"]], env=e, check=True,
                   capture_output=True)


def setup():
    c = connect("postgres")
    q(c, "DROP DATABASE IF EXISTS %s" % DB)
    q(c, "CREATE DATABASE %s" % DB)
    c.close()
    c = connect()
    with open(os.path.join(ROOT, "test", "fixtures", "seed_schema_before.sql")) as f:
        q(c, f.read())
    q(c, "CREATE EXTENSION reportstore")
    q(c, "INSERT INTO assessments VALUES (%s, 'limits')", (ASSESSMENT,))
    c.close()
    restart()  # the workers find the extension at once


def load(c, findings, n):
    q(c, "TRUNCATE reports CASCADE")
    q(c, "TRUNCATE reportstore.objects, reportstore.offload_state, reportstore.delete_queue")
    q(c, """INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status,
                                 generated_at, created_at)
            SELECT md5('r' || i)::uuid, %s, 'compliance', 't', 'json',
                   jsonb_build_object('report', i, 'findings', (SELECT jsonb_agg(jsonb_build_object(
                       'id', g, 'rule', 'RULE-' || (g %% 997),
                       'severity', (ARRAY['low','medium','high','critical'])[g %% 4 + 1],
                       'title', 'Finding ' || g || ' on asset ' || (g %% 101),
                       'evidence', md5('l' || i || ':' || g) || md5(g || ':' || i)))
                     FROM generate_series(1, %s) g)),
                   'completed', now(), timestamptz '2020-01-01' + i * interval '1 second'
              FROM generate_series(1, %s) i""", (ASSESSMENT, findings, n))
    q(c, "VACUUM ANALYZE reports")
    q(c, "CHECKPOINT")
    return q(c, "SELECT sum(octet_length(report_data::text))::bigint FROM reports")[0][0]


def floor_seconds(c):
    """The database floor, warm (the better of two runs)."""
    best = None
    for _ in range(2):
        t = time.monotonic()
        q(c, "COPY (SELECT report_data::text FROM reports) TO '/dev/null'")
        el = time.monotonic() - t
        best = el if best is None else min(best, el)
    return best


def write_floor_seconds(c):
    """The least writing an offload of every row needs (rolled back; the rows are loaded again after)."""
    q(c, "BEGIN")
    try:
        q(c, "SET LOCAL session_replication_role = replica")
        t = time.monotonic()
        q(c, "UPDATE reports SET minio_path = 's3://limits/reports/' || report_id || '/report.json', "
             "report_data = NULL, updated_at = now()")
        q(c, "INSERT INTO reportstore.objects (report_id, path, size, sha256, etag, uploaded_at) "
             "SELECT report_id, minio_path, 1, repeat('0', 64), repeat('0', 32), now() FROM reports")
        return time.monotonic() - t
    finally:
        q(c, "ROLLBACK")


def ceiling_seconds(c, n):
    """curl -Z --parallel-max 16 PUTting each report's text from tmpfs to the sink (the better of two runs)."""
    d = os.path.join("/dev/shm", "reportstore-limits-%d" % os.getpid())
    os.makedirs(d, exist_ok=True)
    cfg = os.path.join(d, "curl.cfg")
    try:
        transfers = []
        with c.cursor() as cur:
            cur.execute("SELECT report_id::text, report_data::text FROM reports")
            for rid, text in cur:
                body = text.encode()
                with open(os.path.join(d, rid), "wb") as f:
                    f.write(body)
                md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
                transfers.append('url = "%s/limits/reports/%s/report.json"\nupload-file = "%s"\noutput = "/dev/null"\n'
                                 'header = "Expect:"\nheader = "Content-Type: application/json"\n'
                                 'header = "Content-MD5: %s"\nwrite-out = "%%{http_code}\\n"\nsilent\n'
                                 % (os.environ["LIMITS_SINK"], rid, os.path.join(d, rid), md5))
        with open(cfg, "w") as out:
            out.write("next\n".join(transfers))  # "next" between transfers, not after the last
        best = None
        for _ in range(2):
            t = time.monotonic()
            r = subprocess.run(["curl", "-s", "-Z", "--parallel-max", "16", "-K", cfg], capture_output=True, text=True)
            el = time.monotonic() - t
            if r.returncode != 0 or r.stdout.split().count("200") != n:
                raise RuntimeError("curl ceiling: rc %d, %d of %d answered 200: %s" %
                                   (r.returncode, r.stdout.split().count("200"), n, r.stderr[-300:]))
            best = el if best is None else min(best, el)
        return best
    finally:
        subprocess.run(["rm", "-rf", d])


def set_system(c, **settings):
    for k, v in settings.items():
        q(c, "ALTER SYSTEM SET reportstore.%s = %%s" % k, (str(v),))
    q(c, "SELECT pg_reload_conf()")


def worker_seconds(c, n):
    """From worker_enabled = on until every report is offloaded."""
    t = time.monotonic()
    set_system(c, worker_enabled="on")
    deadline = t + 1800
    while q(c, "SELECT count(*) FROM reports WHERE minio_path IS NULL")[0][0] > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the worker did not finish in 30 minutes")
        time.sleep(0.05)
    el = time.monotonic() - t
    set_system(c, worker_enabled="off")
    failing = q(c, "SELECT count(*) FROM reportstore.offload_state")[0][0]
    if failing:
        raise RuntimeError("%d reports failed" % failing)
    return el


def throughput():
    rows = []
    for workers in (1, 2):
        c = connect()
        q(c, "ALTER SYSTEM SET reportstore.max_workers = %s", (workers,))
        set_system(c, endpoint=os.environ["LIMITS_SINK"], worker_enabled="off")
        c.close()
        restart()
        c = connect()
        for label, findings, n in SIZES:
            text_bytes = load(c, findings, n)
            floor = floor_seconds(c)
            ceiling = ceiling_seconds(c, n)
            took = worker_seconds(c, n)
            load(c, findings, n)
            took = min(took, worker_seconds(c, n))
            load(c, findings, n)
            write = write_floor_seconds(c)
            row = {"size": label, "reports": n, "workers": workers, "mib": text_bytes / 1048576.0,
                   "floor_per_s": n / floor, "write_floor_per_s": n / write, "read_write_floor_per_s": n / (floor + write),
                   "ceiling_per_s": n / ceiling, "worker_per_s": n / took}
            row["ratio"] = row["worker_per_s"] / row["floor_per_s"]
            row["ratio_read_write"] = row["worker_per_s"] / row["read_write_floor_per_s"]
            row["ratio_ceiling"] = row["worker_per_s"] / row["ceiling_per_s"]
            say("%s x %d, %d worker(s): floor %.0f/s, read+write floor %.0f/s, ceiling %.0f/s, worker %.0f/s "
                "(%.0f%% of the floor)" % (label, n, workers, row["floor_per_s"], row["read_write_floor_per_s"],
                                           row["ceiling_per_s"], row["worker_per_s"], 100 * row["ratio"]))
            rows.append(row)
        c.close()
    return rows


def bulk_read():
    c = connect()
    set_system(c, endpoint=os.environ["LIMITS_RGW"], worker_enabled="off")
    c.close()
    restart()
    c = connect()
    n = 200
    load(c, 60, n)
    q(c, "SELECT reportstore.run_once()")
    ids = [r[0] for r in q(c, "SELECT report_id::text FROM reports ORDER BY report_id")]
    best_seq = best_many = None
    for _ in range(3):
        t = time.monotonic()
        q(c, "SELECT count(report_fetch(id::uuid)) FROM unnest(%s::text[]) id", (ids,))
        seq = time.monotonic() - t
        t = time.monotonic()
        got = q(c, "SELECT count(*) FROM report_fetch_many(%s::uuid[])", (ids,))[0][0]
        many = time.monotonic() - t
        assert got == n
        best_seq = seq if best_seq is None else min(best_seq, seq)
        best_many = many if best_many is None else min(best_many, many)
    say("%d reports of 10 KiB from RGW: one report_fetch() after another %.2f s, report_fetch_many() %.2f s (%.1fx)" %
        (n, best_seq, best_many, best_seq / best_many))
    c.close()
    return {"reports": n, "sequential_s": best_seq, "fetch_many_s": best_many, "speedup": best_seq / best_many}


class PeakRss:
    """Samples a backend's RssAnon every 5 ms on a thread."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0.0, False
        self.base = self.rss()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def rss(self):
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith("RssAnon"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

    def end(self):
        self.stop = True
        self.thread.join()
        return self.peak - self.base


def memory():
    rows = []
    rid = "11111111-1111-4111-8111-111111111111"
    for mb in MEMORY_MB:
        c = connect()
        q(c, "TRUNCATE reports CASCADE")
        if mb < 250:
            q(c, """INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status,
                                         generated_at)
                    SELECT %s, %s, 'compliance', 't', 'json',
                           (SELECT jsonb_agg(jsonb_build_object('i', g, 'name', 'finding ' || g,
                                                                'text', repeat('lorem ', 20)))
                              FROM generate_series(1, %s) g), 'completed', now()""",
              (rid, ASSESSMENT, mb * 1048576 // 170))
        else:
            # A jsonb container holds at most 256 MB, so a text this large needs escapes:
            # each \u0001 is 1 byte in jsonb and 6 in the text.
            q(c, """INSERT INTO reports (report_id, assessment_id, report_type, title, format, report_data, status,
                                         generated_at)
                    SELECT %s, %s, 'compliance', 't', 'json',
                           (SELECT jsonb_agg(jsonb_build_object('i', g, 'text', 'lorem ' || repeat(chr(1), 60)))
                              FROM generate_series(1, %s) g), 'completed', now()""",
              (rid, ASSESSMENT, mb * 1048576 // 400))
        text_mb = q(c, "SELECT octet_length(report_data::text) FROM reports")[0][0] / 1048576.0
        q(c, "CHECKPOINT")
        c.close()
        row = {"text_mb": text_mb}
        for op, sql in [("report_offload", "SELECT report_offload(%s) IS NOT NULL"),
                        ("report_fetch", "SELECT report_fetch(%s) IS NOT NULL"),
                        ("report_fetch_many", "SELECT count(*) FROM report_fetch_many(ARRAY[%s::uuid])"),
                        ("recall", "SELECT reportstore.recall(%s)")]:
            c = connect()  # a fresh backend for each: its peak is this operation's
            pid = q(c, "SELECT pg_backend_pid()")[0][0]
            q(c, "SET statement_timeout = 0")
            sampler = PeakRss(pid)
            t = time.monotonic()
            q(c, sql, (rid,))
            took = time.monotonic() - t
            peak = sampler.end()
            c.close()
            row[op] = {"peak_mb": peak, "x_text": peak / text_mb, "seconds": took}
            say("%.0f MB report: %s %.1f s, peak RssAnon +%.0f MB = %.2fx its text" %
                (text_mb, op, took, peak, peak / text_mb))
        rows.append(row)
    return rows


def pgbench_path():
    bindir = subprocess.run([os.environ.get("PG_CONFIG", "pg_config"), "--bindir"], capture_output=True,
                            text=True).stdout.strip()
    return os.path.join(bindir, "pgbench")


def pgbench_tps(seconds):
    out = subprocess.run([pgbench_path(), "-n", "-c", "4", "-j", "2", "-T", str(seconds), DB],
                         env=dict(os.environ, PGUSER="postgres"), capture_output=True, text=True, check=True).stdout
    return float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out).group(1))


def pgbench_caps():
    """TPS alone, then with the worker migrating at each max_rate cap (0 = none)."""
    seconds = 10
    subprocess.run([pgbench_path(), "-i", "-q", "-s", "10", DB],
                   env=dict(os.environ, PGUSER="postgres"), check=True, capture_output=True)
    c = connect()
    set_system(c, endpoint=os.environ["LIMITS_SINK"], worker_enabled="off", max_rate="0")
    rows = []
    for cap in ["0", "64MB", "16MB", "4MB", "1MB"]:
        load(c, 1540, 1000)  # 1000 x 256 KiB (without a cap the worker may finish before pgbench)
        alone = pgbench_tps(seconds)
        set_system(c, max_rate=cap)
        before = q(c, "SELECT count(*) FROM reports WHERE minio_path IS NOT NULL")[0][0]
        set_system(c, worker_enabled="on")
        t = time.monotonic()
        tps = pgbench_tps(seconds)
        el = time.monotonic() - t
        moved = q(c, "SELECT count(*) FROM reports WHERE minio_path IS NOT NULL")[0][0] - before
        set_system(c, worker_enabled="off")
        row = {"max_rate": cap, "tps_alone": alone, "tps_migrating": tps, "drop_percent": 100 * (alone - tps) / alone,
               "migrated_mib_s": moved * 0.25 / el, "still_pending": 1000 - moved}
        say("max_rate %s: pgbench %.0f TPS alone, %.0f while migrating (%.1f%% drop), migration %.1f MiB/s" %
            (cap, alone, tps, row["drop_percent"], row["migrated_mib_s"]))
        rows.append(row)
    set_system(c, max_rate="0")
    c.close()
    return rows


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    c = connect("postgres")
    version = q(c, "SHOW server_version")[0][0]
    c.close()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "postgresql": version,
            "commit": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                     text=True).stdout.strip()}


def render(r):
    out = ["# reportstore against the limits", "",
           "%s, %d cores, PostgreSQL %s, commit %s%s." % (r["machine"]["cpu"], r["machine"]["cores"],
                                                         r["machine"]["postgresql"], r["machine"]["commit"],
                                                         " (quick run)" if QUICK else ""), "",
           "## Migration: the worker against the limits (S3 server: bench/sink.cpp)", "",
           "Database floor: `COPY (SELECT report_data::text FROM reports) TO '/dev/null'`. Read+write floor: that "
           "plus the set-based UPDATE of every row and INSERT into reportstore.objects that recording the offloads "
           "needs (rolled back). Network ceiling: `curl -Z --parallel-max 16` PUTting the same texts from tmpfs. "
           "The better of two runs each.", "",
           "| size | reports | workers | database floor | read+write floor | network ceiling | worker "
           "| worker / floor | worker / read+write floor |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for t in r["throughput"]:
        out.append("| %s | %d | %d | %.0f/s | %.0f/s | %.0f/s | %.0f/s | %.0f%% | %.0f%% |" % (
            t["size"], t["reports"], t["workers"], t["floor_per_s"], t["read_write_floor_per_s"], t["ceiling_per_s"],
            t["worker_per_s"], 100 * t["ratio"], 100 * t["ratio_read_write"]))
    b = r["bulk_read"]
    if b:
        out += ["", "## Bulk read on Ceph RGW", "",
                "%d reports of 10 KiB: one `report_fetch()` after another %.2f s, `report_fetch_many()` %.2f s: "
                "**%.1fx**." % (b["reports"], b["sequential_s"], b["fetch_many_s"], b["speedup"])]
    out += ["",
            "## pgbench (4 clients) while the worker migrates 256 KiB reports to the sink", "",
            "| reportstore.max_rate | TPS alone | TPS while migrating | drop | migration |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for p in r["pgbench"]:
        out.append("| %s | %.0f | %.0f | %.1f%% | %.1f MiB/s |" % ("none" if p["max_rate"] == "0" else p["max_rate"],
                                                              p["tps_alone"], p["tps_migrating"], p["drop_percent"],
                                                              p["migrated_mib_s"]))
    out += ["", "## Peak backend memory (RssAnon above the backend's start), on Ceph RGW", "",
            "| report text | report_offload | report_fetch | report_fetch_many | recall |", "| ---: | ---: | ---: | ---: | ---: |"]
    for m in r["memory"]:
        out.append("| %.0f MB | %s |" % (m["text_mb"], " | ".join(
            "%.0f MB (%.2fx)" % (m[op]["peak_mb"], m[op]["x_text"])
            for op in ("report_offload", "report_fetch", "report_fetch_many", "recall"))))
    return "\n".join(out) + "\n"


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    setup()
    result = {"machine": machine(), "quick": QUICK}
    only = os.environ.get("LIMITS_ONLY", "throughput,bulk_read,memory,pgbench").split(",")
    for part, run in (("throughput", throughput), ("bulk_read", bulk_read), ("memory", memory),
                      ("pgbench", pgbench_caps)):
        result[part] = run() if part in only else []
    name = "limits-quick" if QUICK else "limits"
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(result, f, indent=1)
    md = render(result)
    with open(os.path.join(out_dir, name + ".md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
