"""Redis's own CPU per record: the shipper's RPUSH batches (500 records, as
VISITLOG_BATCH_RECORDS) and the consumer's claim (fetch.lua, 1000 at a time)
and acknowledgement (DEL), on a private redis-server, read from /proc.
The "Scaling out" table in the README is sized from these figures.
Usage: python redis_cost.py [records]   (needs redis-py; scripts/bench runs it)
"""
import json
import os
import socket
import subprocess
import sys
import time

import redis
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
port = free_port()
p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
time.sleep(0.5)
r = redis.Redis(port=port)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
payload = json.dumps({"_id": "0190f5c2-0000-7000-8000-000000000000", "x": "a" * 850}).encode()
batch = [payload] * 500
fetch = r.register_script(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "lua", "fetch.lua")).read())
for run in range(3):
    c0 = cpu(p.pid)
    for i in range(N // 500):
        r.rpush("q", *batch)
    c1 = cpu(p.pid)
    n = 0
    while True:
        got = fetch(keys=["q", "q:processing:c1:0"], args=[1000])
        if not got: break
        n += len(got)
        r.delete("q:processing:c1:0")
    c2 = cpu(p.pid)
    print(f"records {N} ({len(payload)} B): push {1e6*(c1-c0)/N:.2f} us/record, claim+ack {1e6*(c2-c1)/n:.2f} us/record of Redis CPU")
p.terminate()
