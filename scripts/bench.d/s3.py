"""S3 helper for scripts/bench's office benchmark, run with the moto venv's Python (boto3 is installed
there as a moto dependency; the bench itself runs on the system Python, stdlib only).

    s3.py create   BUCKET                      create the bucket (no error if it is there)
    s3.py empty    BUCKET [--delete-bucket]    delete every object (and the bucket), freeing moto's memory
    s3.py download BUCKET PREFIX --parallel N --dest DIR|/dev/null [--sha256] [--fsync]
        list the objects under PREFIX and download them all, N objects at once (one GetObject each,
        streamed in 1 MiB chunks, like `offsite pull` does it), into DIR (plain writes) or /dev/null;
        --sha256 hashes each object as it streams, --fsync fsyncs each file and its directory: the
        work `offsite pull` does besides downloading. Prints JSON: seconds (from the listing to the last byte; the interpreter's start-up,
        the boto3 import and the client's creation are not included), bytes, objects.

Endpoint and credentials: OFFSITE_TEST_S3_ENDPOINT (default http://127.0.0.1:5055), test/test,
us-east-1, path-style addressing.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

CHUNK = 1 << 20


def client(parallel=10):
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("OFFSITE_TEST_S3_ENDPOINT", "http://127.0.0.1:5055"),
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=max(parallel, 10),
                      retries={"max_attempts": 3, "mode": "standard"}),
    )


def list_keys(s3, bucket, prefix=""):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend((o["Key"], o["Size"]) for o in page.get("Contents", []))
    return out


def create(args):
    s3 = client()
    try:
        s3.create_bucket(Bucket=args.bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    except s3.exceptions.BucketAlreadyExists:
        pass


def empty(args):
    s3 = client()
    try:
        keys = list_keys(s3, args.bucket)
    except s3.exceptions.NoSuchBucket:
        return
    for i in range(0, len(keys), 1000):
        batch = [{"Key": k} for k, _ in keys[i:i + 1000]]
        s3.delete_objects(Bucket=args.bucket, Delete={"Objects": batch, "Quiet": True})
    # Multipart uploads a killed push left behind hold memory too.
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=args.bucket):
        for u in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=args.bucket, Key=u["Key"], UploadId=u["UploadId"])
    if args.delete_bucket:
        s3.delete_bucket(Bucket=args.bucket)
    print(json.dumps({"deleted_objects": len(keys)}))


def download(args):
    s3 = client(args.parallel)
    to_null = args.dest == os.devnull

    def fetch(key):
        body = s3.get_object(Bucket=args.bucket, Key=key)["Body"]
        h = hashlib.sha256() if args.sha256 else None
        n = 0
        if to_null:
            for chunk in body.iter_chunks(CHUNK):
                n += len(chunk)
                if h:
                    h.update(chunk)
        else:
            path = os.path.join(args.dest, key)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                for chunk in body.iter_chunks(CHUNK):
                    if h:
                        h.update(chunk)
                    f.write(chunk)
                    n += len(chunk)
                if args.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            if args.fsync:
                d = os.open(os.path.dirname(path), os.O_RDONLY)
                try:
                    os.fsync(d)
                finally:
                    os.close(d)
        return n

    t0 = time.perf_counter()
    keys = list_keys(s3, args.bucket, args.prefix)
    if not keys:
        sys.exit(f"s3.py: no objects under s3://{args.bucket}/{args.prefix}")
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        sizes = list(pool.map(fetch, [k for k, _ in keys]))
    seconds = time.perf_counter() - t0
    want = sum(s for _, s in keys)
    if sum(sizes) != want:
        sys.exit(f"s3.py: downloaded {sum(sizes)} bytes, the listing says {want}")
    print(json.dumps({"seconds": seconds, "bytes": sum(sizes), "objects": len(keys)}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("create")
    p.add_argument("bucket")
    p = sub.add_parser("empty")
    p.add_argument("bucket")
    p.add_argument("--delete-bucket", action="store_true")
    p = sub.add_parser("download")
    p.add_argument("bucket")
    p.add_argument("prefix")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--dest", required=True)
    p.add_argument("--sha256", action="store_true", help="hash every object while it streams (as pull does)")
    p.add_argument("--fsync", action="store_true", help="fsync every file and its directory (as pull does)")
    args = ap.parse_args()
    {"create": create, "empty": empty, "download": download}[args.cmd](args)


if __name__ == "__main__":
    main()
