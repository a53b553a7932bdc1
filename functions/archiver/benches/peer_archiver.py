"""A plain Python archiver, the peer of the archiver bench (issue 17).

It does the archiver's job the obvious way on the same `KinesisEvent` payload: `json.loads` of
the event, base64 of every record, `json.loads` per record (validation), the records joined as
JSON lines, gzip (fixed header: mtime 0), and one `put_object` with boto3 to an in-memory
stand-in for S3 (a botocore `before-send` hook answers 200 without any network). Without boto3
the object goes into a dict instead.

Usage: peer_archiver.py PAYLOAD_FILE RUNS LEVEL [LEVEL...]
Prints one line per level: `level=<n> median_ms=<m> min_ms=<m> output=<bytes>`, after one warm-up
run per level (the timed runs are warm, like the Rust side's).
"""

import base64
import gzip
import json
import statistics
import sys
import time

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

    def put(self, key, body, metadata):
        if self.client is None:
            self.objects[key] = body
            return
        self.client.put_object(
            Bucket="archive",
            Key=key,
            Body=body,
            ContentType="application/gzip",
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
    body = gzip.compress(b"".join(lines), compresslevel=level, mtime=0)
    s3.put(
        f"raw/2025/02/12/19/authtrail-events-shardId-000000000000-{first}.jsonl.gz",
        body,
        {
            "first-sequence-number": first,
            "last-sequence-number": last,
            "record-count": str(len(lines)),
        },
    )
    return len(body)


def main():
    with open(sys.argv[1], "rb") as f:
        payload = f.read()
    runs = int(sys.argv[2])
    s3 = MemoryS3()
    for level in (int(v) for v in sys.argv[3:]):
        archive(payload, level, s3)  # warm-up
        times = []
        out = 0
        for _ in range(runs):
            t = time.perf_counter()
            out = archive(payload, level, s3)
            times.append(time.perf_counter() - t)
        print(
            f"level={level} median_ms={statistics.median(times) * 1e3:.2f} "
            f"min_ms={min(times) * 1e3:.2f} output={out} boto3={s3.client is not None}",
            flush=True,
        )


if __name__ == "__main__":
    main()
