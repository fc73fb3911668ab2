"""The seed design's bulk consumer, for the drain benchmark to measure
visitlog beside: `LPOP queue 1000`, `json.loads` each record, `ts` made a
date (as the seed stored it), `insert_many(ordered=False)` into
`request_logs`, until the queue is empty. No validation, no derivation, no
crash safety (a batch popped and not yet inserted is lost when the process
dies): the cheapest thing that moves the bytes.

Usage: consumer.py REDIS_URL QUEUE MONGODB_URI DATABASE
Prints its CPU seconds and wall seconds from the first LPOP to the end.
"""

import json
import sys
import time
from datetime import datetime

import pymongo
import redis


def main() -> None:
    redis_url, queue, mongodb_uri, database = sys.argv[1:5]
    r = redis.Redis.from_url(redis_url)
    collection = pymongo.MongoClient(mongodb_uri)[database]["request_logs"]
    r.ping()
    collection.database.command("ping")
    # Start-up excluded, as for visitlog: counted from the first LPOP.
    cpu, wall = time.process_time(), time.monotonic()
    while True:
        batch = r.lpop(queue, 1000)
        if not batch:
            break
        docs = []
        for raw in batch:
            doc = json.loads(raw)
            doc["ts"] = datetime.fromisoformat(doc["ts"].replace("Z", "+00:00"))
            docs.append(doc)
        try:
            collection.insert_many(docs, ordered=False)
        except pymongo.errors.BulkWriteError:
            pass
    print(time.process_time() - cpu, time.monotonic() - wall)


if __name__ == "__main__":
    main()
