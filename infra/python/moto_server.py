"""moto's server (the pinned version), with fixes to its Kinesis shard store.

The tests and `make demo` start this instead of `moto_server`. Every API and every response is
moto's own; only these shard methods change:

* ``get_max_sequence_number`` / ``get_min_sequence_number`` copy every key of the shard into a
  list to read one end, so each put costs O(records already in the shard) and putting N records
  costs O(N^2): 100,000 records took minutes. Here they read the ends of the ordered dict, O(1).
* ``put_record`` reads the last sequence number and stores the next one in two steps, and the
  server is threaded: two PutRecords in flight on one shard can take the same number, and the
  second silently replaces the first record. Real Kinesis never loses an accepted record, so the
  step is made atomic with a lock.

* ``get_records`` walks the shard's records from the first one on every call to find where the
  iterator points, so each GetRecords costs O(records already in the shard): a consumer reading
  a stream of a million records spent most of its time there. Here the start is found by a
  binary search over the (increasing) sequence numbers, kept in a list beside the ordered dict,
  and the same records and ``MillisBehindLatest`` are returned.
* Readers iterated the ordered dict while another thread's PutRecords inserted into it, which
  Python answers with "dictionary changed size during iteration" (an error answer that is not
  moto's JSON). Reads and puts of the shard store now take the same lock.

* ``get_shard_iterator`` writes the ``StreamName`` parameter into the iterator it hands out,
  so an iterator asked for by ``StreamARN`` alone names the stream ``None`` and the GetRecords
  that uses it fails with ResourceNotFoundException. Here the stream's own name is used.

* ``Stream.put_record`` hands every record it stores to each Lambda function mapped to the
  stream by an event source mapping (the pipeline stack creates them), and moto invokes those
  functions through Docker: with no Docker daemon, each record costs a failed attempt to reach
  it, which took 89 % of moto's CPU in a chaos run (py-spy). The project's runner is the event
  source mapping (it reads the stream with GetRecords, as Lambda does); here the stream only
  stores the record.

And two changes of speed only: ``PutRecords`` and ``GetRecords`` answer with the same JSON
documents, written with ``json.dumps`` instead of moto's model-driven serializer, which spent two
thirds of a PutRecords call formatting 500 ``{SequenceNumber, ShardId}`` pairs, and decoded
every record's base64 ``Data`` only to encode it again for a GetRecords answer (the stored text
is the base64 the producer sent; the timestamp is epoch seconds, as the JSON protocol has it).
"""

import bisect
import json
import sys
import threading

from moto.kinesis import models, responses

_put_lock = threading.Lock()
_original_put_record = models.Shard.put_record


def _get_max_sequence_number(self):
    return next(reversed(self.records), 0)


def _get_min_sequence_number(self):
    return next(iter(self.records), 0)


def _put_record(self, *args, **kwargs):
    with _put_lock:
        return _original_put_record(self, *args, **kwargs)


_original_sequence_number_at = models.Shard.get_sequence_number_at
_keys_cache = {}


def _shard_keys(shard):
    """The shard's sequence numbers in order, kept in step with its records (caller holds the lock)."""
    records = shard.records
    cached = _keys_cache.get(id(shard))
    if cached is None or cached[0] is not records or len(cached[1]) > len(records):
        cached = (records, list(records.keys()))
        _keys_cache[id(shard)] = cached
    keys = cached[1]
    missing = len(records) - len(keys)
    if missing > 0:
        tail = []
        for key in reversed(records):
            tail.append(key)
            if len(tail) == missing:
                break
        keys.extend(reversed(tail))
    return keys


def _get_records(self, last_sequence_id, limit):
    with _put_lock:
        last_sequence_int = int(last_sequence_id)
        keys = _shard_keys(self)
        start = bisect.bisect_right(keys, last_sequence_int)
        end = len(keys) if limit is None else min(len(keys), start + limit)
        results = [self.records[k] for k in keys[start:end]]
        secs_behind_latest = 0.0
        if results:
            last_sequence_int = results[-1].sequence_number
            very_last_record = self.records[keys[-1]]
            secs_behind_latest = very_last_record.created_at - results[-1].created_at
        return results, last_sequence_int, int(secs_behind_latest * 1000)


def _get_sequence_number_at(self, at_timestamp):
    with _put_lock:
        return _original_sequence_number_at(self, at_timestamp)


_original_get_shard_iterator = models.KinesisBackend.get_shard_iterator


def _get_shard_iterator(self, stream_arn, stream_name, *args, **kwargs):
    if stream_name is None:
        stream_name = self.describe_stream(stream_arn=stream_arn, stream_name=None).stream_name
    return _original_get_shard_iterator(self, stream_arn, stream_name, *args, **kwargs)


def _stream_put_record(self, partition_key, explicit_hash_key, data):
    shard = self.get_shard_for_key(partition_key, explicit_hash_key)
    sequence_number = shard.put_record(partition_key, data, explicit_hash_key)
    return sequence_number, shard.shard_id


models.Stream.put_record = _stream_put_record
models.KinesisBackend.get_shard_iterator = _get_shard_iterator
models.Shard.get_records = _get_records
models.Shard.get_sequence_number_at = _get_sequence_number_at
models.Shard.get_max_sequence_number = _get_max_sequence_number
models.Shard.get_min_sequence_number = _get_min_sequence_number
models.Shard.put_record = _put_record


def _put_records_response(self):
    result = self.kinesis_backend.put_records(
        self._get_param("StreamARN"),
        self._get_param("StreamName"),
        self._get_param("Records"),
    )
    return json.dumps(result)


responses.KinesisResponse.put_records = _put_records_response


def _get_records_response(self):
    next_shard_iterator, records, millis_behind_latest = self.kinesis_backend.get_records(
        self._get_param("StreamARN"),
        self._get_param("ShardIterator"),
        self._get_param("Limit"),
    )
    return json.dumps(
        {
            "NextShardIterator": next_shard_iterator,
            "Records": [
                {
                    "Data": r.data,
                    "PartitionKey": r.partition_key,
                    "SequenceNumber": str(r.sequence_number),
                    "ApproximateArrivalTimestamp": r.created_at,
                }
                for r in records
            ],
            "MillisBehindLatest": millis_behind_latest,
        }
    )


responses.KinesisResponse.get_records = _get_records_response

from moto.server import main  # noqa: E402  (after the patches, as the server imports models)

if __name__ == "__main__":
    sys.exit(main())
