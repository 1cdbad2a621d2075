#!/usr/bin/env python3
"""A bounded soak of the real cellflux-server: 8 clients for SOAK_S seconds (default 30) sending
valid requests (1-2 samples, 2-4 steps, random seeds) and, one in ten, a request that must fail
with INVALID_ARGUMENT. Passes with 0 unexpected outcomes and a resident-set growth from the end of
a warm-up to the end of the soak under RSS_BOUND_MIB (64).
  soak_check.py BUILD_DIR [SOAK_S]   → exit 0 pass, 1 fail, 77 skip."""
import os
import random
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Env, Fail, Server, check, remember_perturbations, request, say  # noqa: E402

CLIENTS = 8
RSS_BOUND_MIB = 64


def main():
    env = Env(sys.argv[1])
    soak_s = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    import grpc
    from cellflux.v1 import cellflux_pb2 as pb
    ckpt = os.path.join(env.tmp, "ckpt")
    env.init_checkpoint(ckpt)
    srv = Server(env, ckpt, extra=["--max-batch", "8"])
    remember_perturbations(srv.stub, pb, srv.info)
    info = srv.info
    counts = {"ok": 0, "invalid": 0}
    unexpected = []
    lock = threading.Lock()

    def client(k, until):
        rng = random.Random(k)
        while time.monotonic() < until:
            bad = rng.random() < 0.1
            r = request(pb, info, seed=rng.getrandbits(64), samples=rng.choice([1, 2]),
                        steps=rng.choice([2, 3, 4]), pert="BRD-NOPE" if bad else None)
            try:
                resp = srv.stub.Predict(r, timeout=120)
                good = not bad and len(resp.predictions) == r.options.num_samples
                with lock:
                    if good:
                        counts["ok"] += 1
                    else:
                        unexpected.append(f"client {k}: OK for {'bad' if bad else 'short'} request")
            except grpc.RpcError as e:
                with lock:
                    if bad and e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                        counts["invalid"] += 1
                    else:
                        unexpected.append(f"client {k}: {e.code().name} {e.details()[:100]}")

    def run(seconds):
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=client, args=(k, until)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    warm = min(8.0, soak_s / 4)
    run(warm)
    rss0 = srv.rss_bytes()
    run(soak_s)
    rss1 = srv.rss_bytes()
    rc = srv.stop()
    growth = (rss1 - rss0) / 2**20
    say(f"soak: {CLIENTS} clients × {soak_s:.0f} s (+{warm:.0f} s warm-up): {counts['ok']} OK, "
        f"{counts['invalid']} expected INVALID_ARGUMENT, {len(unexpected)} unexpected; RSS "
        f"{rss0 / 2**20:.0f} → {rss1 / 2**20:.0f} MiB")
    for u in unexpected[:10]:
        say(f"  unexpected: {u}")
    check(not unexpected, "0 unexpected outcomes")
    check(counts["ok"] > 0 and counts["invalid"] > 0, "both kinds of request ran")
    check(growth < RSS_BOUND_MIB, f"RSS growth {growth:.1f} MiB < {RSS_BOUND_MIB} MiB")
    check(rc == 0, "SIGTERM after the soak: exit 0")
    import shutil
    shutil.rmtree(env.tmp, ignore_errors=True)
    say("PASS")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        say(f"FAIL: {e}")
        sys.exit(1)
