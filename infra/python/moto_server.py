"""moto's server (the pinned version), with three fixes to its Kinesis shard store.

The tests and `make demo` start this instead of `moto_server`. Every API and every response is
moto's own; only these shard methods change:

* ``get_max_sequence_number`` / ``get_min_sequence_number`` copy every key of the shard into a
  list to read one end, so each put costs O(records already in the shard) and putting N records
  costs O(N^2): 100,000 records took minutes. Here they read the ends of the ordered dict, O(1).
* ``put_record`` reads the last sequence number and stores the next one in two steps, and the
  server is threaded: two PutRecords in flight on one shard can take the same number, and the
  second silently replaces the first record. Real Kinesis never loses an accepted record, so the
  step is made atomic with a lock.

And one change of speed only: ``PutRecords`` answers with the same JSON document, written with
``json.dumps`` instead of moto's model-driven serializer, which spent two thirds of each call
formatting 500 ``{SequenceNumber, ShardId}`` pairs.
"""

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

from moto.server import main  # noqa: E402  (after the patches, as the server imports models)

if __name__ == "__main__":
    sys.exit(main())
