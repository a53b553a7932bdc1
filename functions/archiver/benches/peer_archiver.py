"""A plain Python archiver, the peer of the archiver bench (issue 17).

It does the archiver's job the obvious way on the same `KinesisEvent` payload: `json.loads` of
the event, base64 of every record, `json.loads` per record (validation), the records joined as
JSON lines, gzip (fixed header: mtime 0), and one `put_object` with boto3 to an in-memory
stand-in for S3 (a botocore `before-send` hook answers 200 without any network). Without boto3
the object goes into a dict instead.

Usage: peer_archiver.py PAYLOAD_FILE RUNS LEVEL [LEVEL...]
Prints one line per level: `level=<n> median_ms=<m> min_ms=<m> output=<bytes>`, after one warm-up
run per level (the timed runs are warm, like the Rust side's). LEVEL `none` stores the joined
lines uncompressed (everything but the compressor, for comparing the rest of the job).

Usage: peer_archiver.py --compress-only BODY_FILE RUNS LEVEL [LEVEL...]
Times the peer's compressor alone (`gzip.compress`, that is CPython's zlib) on the given body:
the same lines as above, with `zlib=<version>`.
"""

import base64
import gzip
import json
import statistics
import sys
import time
import zlib

try:
    import boto3
    import botocore.awsrequest
except ImportError:  # the standard library only
    boto3 = None


class _EmptyBody:
    """The raw body of the stand-in's answer: empty."""

    def stream(self, **_kwargs):
        return iter((b"",))


class MemoryS3:
    """Stores PUT bodies in a dict; with boto3, a real client whose requests never leave."""

    def __init__(self):
        self.objects = {}
        self.client = None
        if boto3 is not None:
            self.client = boto3.client(
                "s3",
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            self.client.meta.events.register("before-send.s3.PutObject", self._answer)

    def _answer(self, request, **_kwargs):
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        self.objects[request.url] = body
        return botocore.awsrequest.AWSResponse(request.url, 200, {}, _EmptyBody())

    def put(self, key, body, metadata, gzipped=True):
        if self.client is None:
            self.objects[key] = body
            return
        self.client.put_object(
            Bucket="archive",
            Key=key,
            Body=body,
            ContentType="application/gzip" if gzipped else "application/x-ndjson",
            Metadata=metadata,
            IfNoneMatch="*",
        )


def archive(payload, level, s3):
    event = json.loads(payload)
    lines = []
    first = last = None
    for rec in event["Records"]:
        k = rec["kinesis"]
        data = base64.b64decode(k["data"])
        json.loads(data)  # validation: a record must be JSON
        if not data.endswith(b"\n"):
            data += b"\n"
        lines.append(data)
        first = first or k["sequenceNumber"]
        last = k["sequenceNumber"]
    body = b"".join(lines)
    if level is not None:
        body = gzip.compress(body, compresslevel=level, mtime=0)
    s3.put(
        f"raw/2025/02/12/19/authtrail-events-shardId-000000000000-{first}.jsonl"
        + (".gz" if level is not None else ""),
        body,
        {
            "first-sequence-number": first,
            "last-sequence-number": last,
            "record-count": str(len(lines)),
        },
        gzipped=level is not None,
    )
    return len(body)


def timed(job, runs):
    """Runs `job` once to warm up, then `runs` times: (median ms, min ms, its last result)."""
    job()
    times = []
    out = 0
    for _ in range(runs):
        t = time.perf_counter()
        out = job()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, min(times) * 1e3, out


def main():
    compress_only = sys.argv[1] == "--compress-only"
    args = sys.argv[2:] if compress_only else sys.argv[1:]
    with open(args[0], "rb") as f:
        data = f.read()
    runs = int(args[1])
    s3 = MemoryS3()
    for name in args[2:]:
        level = None if name == "none" else int(name)
        if compress_only:
            median, least, out = timed(
                lambda: len(gzip.compress(data, compresslevel=level, mtime=0)), runs
            )
            extra = f"zlib={zlib.ZLIB_RUNTIME_VERSION}"
        else:
            median, least, out = timed(lambda: archive(data, level, s3), runs)
            extra = f"boto3={s3.client is not None}"
        print(
            f"level={name} median_ms={median:.2f} min_ms={least:.2f} output={out} {extra}",
            flush=True,
        )


if __name__ == "__main__":
    main()
