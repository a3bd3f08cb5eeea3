#!/usr/bin/python3
"""The alternative users write today: an application-side migration script.

Reads report_data::text in batches (oldest first, FOR UPDATE SKIP LOCKED, one
transaction per batch, like the reportstore worker), uploads each body with
boto3 put_object from a ThreadPoolExecutor of --concurrency threads, checks the
returned ETag against the body's MD5, then sets minio_path, clears report_data
and bumps updated_at, exactly as the extension does.

  /usr/bin/python3 bench/migrate.py --dsn "host=... dbname=bench" --table appcopy.reports \
      --endpoint http://127.0.0.1:9511 --bucket reports --concurrency 16 --batch-size 256

Prints one JSON line: {"migrated": n, "bytes": b, "seconds": s} (s from the first query).
"""
import argparse
import concurrent.futures as cf
import hashlib
import json
import os
import time

import boto3
import botocore.config
import psycopg2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--table", default="reports")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", default="reports")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args()

    s3 = boto3.client(
        "s3", endpoint_url=args.endpoint, region_name="us-east-1",
        aws_access_key_id=os.environ.get("BENCH_S3_ACCESS_KEY", "bench"),
        aws_secret_access_key=os.environ.get("BENCH_S3_SECRET_KEY", "bench"),
        config=botocore.config.Config(max_pool_connections=args.concurrency,
                                      s3={"addressing_style": "path"},
                                      retries={"max_attempts": 3}))
    db = psycopg2.connect(args.dsn)

    def upload(report_id, fmt, body):
        data = body.encode()
        key = f"reports/{report_id}/report.{fmt}"
        resp = s3.put_object(Bucket=args.bucket, Key=key, Body=data, ContentType="application/json")
        if resp["ETag"].strip('"') != hashlib.md5(data).hexdigest():
            raise RuntimeError(f"ETag mismatch for {key}")
        return report_id, f"s3://{args.bucket}/{key}", len(data)

    migrated = 0
    total = 0
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        while True:
            with db.cursor() as cur:
                cur.execute(
                    f"SELECT report_id::text, lower(format::text), report_data::text FROM {args.table} "
                    "WHERE minio_path IS NULL AND report_data IS NOT NULL "
                    "ORDER BY created_at, report_id LIMIT %s FOR UPDATE SKIP LOCKED", (args.batch_size,))
                rows = cur.fetchall()
                if not rows:
                    db.rollback()
                    break
                futures = [pool.submit(upload, *row) for row in rows]
                for fut in cf.as_completed(futures):
                    report_id, path, size = fut.result()
                    cur.execute(
                        f"UPDATE {args.table} SET minio_path = %s, report_data = NULL, updated_at = now() "
                        "WHERE report_id = %s", (path, report_id))
                    migrated += 1
                    total += size
            db.commit()
    print(json.dumps({"migrated": migrated, "bytes": total, "seconds": time.monotonic() - t0}))


if __name__ == "__main__":
    main()
