#!/usr/bin/python3
"""Load generator for cellflux-server (bench/RESULTS.md "Server under load").

It starts one real cellflux-server per batching mode (step, request) on loopback with a tiny
random checkpoint (cellflux-tool init-checkpoint, configs/tiny.json), then
  * closed loop, one mode after the other: C clients each send Predicts back to back
    (C = 1 2 4 8 16 32 64), measured over a steady-state window (--warmup-seconds unmeasured, then
    --level-seconds counted), and
  * open loop: Poisson arrivals at a fixed rate (default: half the offline capacity), in
    --open-rounds rounds where the modes take turns (same arrival times per round), latencies
    pooled per mode,
reporting throughput (samples/s), p50/p95/p99 latency, server CPU per sample and rows per forward
per level, and
  * screen + interactive (--screen-seconds > 0, step mode): a screen of --screen-concurrency
    clients keeps the server saturated while interactive requests arrive (Poisson,
    --interactive-rate/s); measured twice in alternating rounds: the screen sent as INTERACTIVE
    (one class: FIFO, the behaviour before priorities) and as BATCH (what `cellflux-client screen`
    sends). Reports the interactive requests' p50/p95/p99 and the screen's throughput. The offline reference is build/bench/offline_sampler_bench at batch = --max-batch with
the same steps/guidance (the same fixed-batch work with no server around it), measured right before
each mode's closed-loop sweep. Prints a markdown table; --json writes raw numbers.

  /usr/bin/python3 bench/server_load_bench.py --build build [--steps 20] [--max-batch 16]
      [--concurrency 1,2,4,8,16,32,64] [--level-seconds 20] [--warmup-seconds 3] [--open-seconds 30]
      [--open-rounds 4] [--threads 2] [--server-threads 0] [--modes step,request] [--device cpu]
      [--screen-seconds 0] [--screen-concurrency 64] [--interactive-rate 1] [--json out.json]

--device (cpu, cuda:0, ...) goes to the servers and to the offline reference alike.
--modes takes batching modes (step, request), each optionally suffixed -nohelp / -help to start
its server with --help-decode-in-flight false / true (e.g. --modes step-help,step-nohelp,request).
Every request has a deadline; servers are stopped (SIGTERM) on exit.
"""
import argparse
import asyncio
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def percentile(values, q):
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class Server:
    def __init__(self, binary, checkpoint, mode, max_batch, threads, log_path, device="cpu"):
        self.port = free_port()
        self.metrics_port = free_port()
        self.log = open(log_path, "w")
        # A mode is a --batching value, optionally with a suffix: "-nohelp" starts the server with
        # --help-decode-in-flight false, "-help" with true (the step loop decoding between forwards).
        batching, extra = mode, []
        for suffix, value in (("-nohelp", "false"), ("-help", "true")):
            if mode.endswith(suffix):
                batching, extra = mode[:-len(suffix)], ["--help-decode-in-flight", value]
                break
        self.proc = subprocess.Popen(
            [binary, "--checkpoint", checkpoint, "--listen", f"127.0.0.1:{self.port}",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--device", device, "--threads", str(threads),
             "--max-batch", str(max_batch), "--max-queue", "4096", "--batching", batching,
             "--max-queue-delay-ms", "10"] + extra,
            stdout=self.log, stderr=subprocess.STDOUT)

    def forwards(self):
        """(velocity forwards, rows in them) so far, from cellflux_batch_size on /metrics."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).read().decode()
        count = float(re.search(r"^cellflux_batch_size_count(?:\{[^}]*\})? ([0-9.eE+-]+)", text, re.M).group(1))
        total = float(re.search(r"^cellflux_batch_size_sum(?:\{[^}]*\})? ([0-9.eE+-]+)", text, re.M).group(1))
        return count, total

    def usage(self):
        """(minor page faults, CPU seconds) of the server process so far, from /proc."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[7]), (int(fields[11]) + int(fields[12])) / tick

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Client:
    def __init__(self, pb, pb_grpc, address, steps, guidance):
        self.pb, self.pb_grpc, self.address = pb, pb_grpc, address
        self.channel = grpc.insecure_channel(address)
        self.stub = pb_grpc.CellFluxStub(self.channel)
        deadline = time.time() + 180
        while True:
            try:
                self.info = self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
                break
            except grpc.RpcError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        ids = self.stub.ListPerturbations(pb.ListPerturbationsRequest(page_size=64), timeout=10)
        self.ids = [p.id for p in ids.perturbations]
        size = self.info.image_size
        rng = random.Random(0)
        self.planes = [struct.pack(f"<{size * size}H", *[rng.randrange(4096) for _ in range(size * size)])
                       for _ in self.info.channel_names]
        self.steps, self.guidance = steps, guidance

    def request(self, i, priority=None):
        pb = self.pb
        req = pb.PredictRequest(perturbation_id=self.ids[i % len(self.ids)], request_id=f"bench-{i}")
        if priority is not None:
            req.options.priority = priority
        req.data.image.height = req.data.image.width = self.info.image_size
        for name, plane in zip(self.info.channel_names, self.planes):
            req.data.image.channels.add(name=name, encoding=pb.RAW_U16_LE, data=plane)
        req.data.expression.values.extend([0.0] * len(self.info.gene_ids))
        req.options.num_steps = self.steps
        req.options.guidance_scale = self.guidance
        req.options.num_samples = 1
        req.options.seed = i
        req.options.output_encoding = pb.RAW_U16_LE
        return req

    def call(self, i):
        req = self.request(i)
        t0 = time.perf_counter()
        self.stub.Predict(req, timeout=600)
        return time.perf_counter() - t0

    async def acall(self, stub, i, priority=None):
        req = self.request(i, priority)
        t0 = time.perf_counter()
        await stub.Predict(req, timeout=600)
        return time.perf_counter() - t0


# The load loops run on one asyncio event loop (grpc.aio) rather than a thread per client: the
# generator shares the server's 2 cores, and 16-64 Python threads fighting over the GIL took about a
# quarter of the CPU away from the server.
def closed_loop(client, concurrency, warmup_s, window_s, probe):
    """C clients send back to back; throughput and latency over a steady-state window.

    The first warmup_s fill the batch and are not counted; then completions are counted for
    window_s (latencies of the requests that finish inside it); then the clients stop sending and
    the drain is not counted either: a short run's ramp-up and drain, when the batch is part
    empty, would otherwise be a large share of it. probe() is called at the window's two ends
    (server counters)."""
    async def run():
        done = []  # (finish time, latency)
        counter = iter(range(10**9))
        async with grpc.aio.insecure_channel(client.address) as channel:
            stub = client.pb_grpc.CellFluxStub(channel)
            t0 = time.perf_counter()
            start, end = t0 + warmup_s, t0 + warmup_s + window_s

            async def worker():
                while time.perf_counter() < end:
                    latency = await client.acall(stub, next(counter))
                    done.append((time.perf_counter(), latency))

            async def marks():
                await asyncio.sleep(max(0.0, start - time.perf_counter()))
                before = probe()
                await asyncio.sleep(max(0.0, end - time.perf_counter()))
                return before, probe()

            results = await asyncio.gather(marks(), *[worker() for _ in range(concurrency)])
            return done, start, end, results[0]

    cpu0 = time.process_time()
    done, start, end, (before, after) = asyncio.run(run())
    client_cpu = time.process_time() - cpu0
    latencies = [lat for t, lat in done if start <= t < end]
    n = len(latencies)
    return {"concurrency": concurrency, "requests": n, "seconds": end - start,
            "client_cpu_s_per_sample": client_cpu / max(1, len(done)),
            "samples_per_s": n / (end - start), "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95), "p99": percentile(latencies, 0.99),
            "server_before": before, "server_after": after}


def open_loop(client, rate, seconds, seed=1):
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    while True:
        t += rng.expovariate(rate)
        if t > seconds:
            break
        arrivals.append(t)

    async def run():
        latencies = []
        async with grpc.aio.insecure_channel(client.address) as channel:
            stub = client.pb_grpc.CellFluxStub(channel)

            async def one(i, at):
                await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
                latencies.append(await client.acall(stub, 100000 + i))

            start = time.perf_counter()
            await asyncio.gather(*[one(i, at) for i, at in enumerate(arrivals)])
            return latencies, time.perf_counter() - start

    latencies, wall = asyncio.run(run())
    return {"rate": rate, "requests": len(latencies), "seconds": wall, "latencies": latencies,
            "samples_per_s": len(latencies) / wall, "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95), "p99": percentile(latencies, 0.99)}


def screen_and_interactive(client, concurrency, rate, seconds, screen_priority, seed=1):
    """A screen of `concurrency` clients sending back to back with `screen_priority`, and
    interactive requests (Poisson, `rate`/s, INTERACTIVE) beside it for `seconds` (after a 3 s
    ramp-up). Returns the interactive latencies and the screen's throughput over the window."""
    rng = random.Random(seed)
    arrivals, t = [], 3.0
    while True:
        t += rng.expovariate(rate)
        if t > 3.0 + seconds:
            break
        arrivals.append(t)
    pb = client.pb

    async def run():
        screen_done, probe = [], []
        counter = iter(range(10**9))
        async with grpc.aio.insecure_channel(client.address) as channel:
            stub = client.pb_grpc.CellFluxStub(channel)
            start = time.perf_counter()
            end = start + 3.0 + seconds

            async def screen_worker():
                while time.perf_counter() < end:
                    await client.acall(stub, next(counter), screen_priority)
                    screen_done.append(time.perf_counter())

            async def interactive(i, at):
                await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
                probe.append(await client.acall(stub, 500000 + i, pb.INTERACTIVE))

            await asyncio.gather(*[screen_worker() for _ in range(concurrency)],
                                 *[interactive(i, at) for i, at in enumerate(arrivals)])
            window = [x for x in screen_done if start + 3.0 <= x < end]
            return probe, len(window) / seconds

    probe, screen_rate = asyncio.run(run())
    return probe, screen_rate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default="build")
    ap.add_argument("--config", default="configs/tiny.json")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=1.2)
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of the offline reference")
    ap.add_argument("--server-threads", type=int, default=0,
                    help="the server's --threads (each of its batch and codec threads); 0 = its default, "
                         "half the cores each")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32,64")
    ap.add_argument("--level-seconds", type=float, default=20, help="measured window per concurrency level")
    ap.add_argument("--warmup-seconds", type=float, default=3, help="unmeasured start of each level")
    ap.add_argument("--open-seconds", type=float, default=30)
    ap.add_argument("--open-rate", type=float, default=0, help="arrivals/s; 0 = half the offline capacity")
    ap.add_argument("--open-rounds", type=int, default=4,
                    help="open-loop rounds; the modes take turns each round (--open-seconds split over them)")
    ap.add_argument("--modes", default="step,request")
    ap.add_argument("--device", default="cpu", help="server and offline reference device: cpu, cuda:0, ...")
    ap.add_argument("--screen-seconds", type=float, default=0,
                    help="screen + interactive runs (step mode): seconds per priority setting; 0 = skip")
    ap.add_argument("--screen-concurrency", type=int, default=64)
    ap.add_argument("--interactive-rate", type=float, default=1.0)
    ap.add_argument("--screen-rounds", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="cellflux-load-bench.")
    sys.path.insert(0, os.path.join(src, "client", "python"))  # the cellflux package's stubs
    from cellflux.v1 import cellflux_pb2 as pb
    from cellflux.v1 import cellflux_pb2_grpc as pb_grpc

    ckpt = os.path.join(tmp, "ckpt")
    subprocess.run([f"{args.build}/common/tools/cellflux-tool", "init-checkpoint", "--config", args.config,
                    "--out", ckpt, "--perturbations", "16"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    def offline_rate():
        out = subprocess.run([f"{args.build}/bench/offline_sampler_bench", "--checkpoint", ckpt,
                              "--batch", str(args.max_batch), "--steps", str(args.steps),
                              "--guidance", str(args.guidance), "--threads", str(args.threads),
                              "--repeats", "7", "--vae-max-batch", "0",  # its fastest setting here
                              "--device", args.device],
                             check=True, capture_output=True, text=True).stdout
        return float(re.search(r"median\): ([0-9.eE+-]+)", out).group(1))

    # The machine's speed drifts by 20-30% within an hour here (shared VM), so the offline reference
    # is measured again right before each mode's sweep and each mode is compared with its own.
    first_offline = offline_rate()
    print(f"offline sampler, batch {args.max_batch}: {first_offline:.2f} samples/s", flush=True)
    open_rate = args.open_rate or first_offline / 2

    results = {"offline_samples_per_s": first_offline, "device": args.device, "steps": args.steps,
               "guidance": args.guidance,
               "max_batch": args.max_batch, "threads": args.threads, "open_rate": open_rate, "modes": {}}
    levels = [int(c) for c in args.concurrency.split(",") if c]
    modes = args.modes.split(",")
    # Every mode's server starts up front (an idle one costs nothing), so the open-loop runs can
    # alternate between the modes round by round: both see the same machine (its speed drifts).
    servers, clients = {}, {}
    try:
        for mode in modes:
            servers[mode] = Server(f"{args.build}/server/cellflux-server", ckpt, mode, args.max_batch,
                                   args.server_threads, os.path.join(tmp, f"server-{mode}.log"), args.device)
        for mode in modes:
            clients[mode] = Client(pb, pb_grpc, f"127.0.0.1:{servers[mode].port}", args.steps, args.guidance)
        for index, mode in enumerate(modes):
            offline = first_offline if index == 0 else offline_rate()
            if index > 0:
                print(f"offline sampler, batch {args.max_batch}: {offline:.2f} samples/s", flush=True)
            server, client = servers[mode], clients[mode]
            # Warm-up, untimed: one full batch, so the first measured level does not pay for the
            # allocator's heap growing to batch size or for first-call initialisation.
            probe = lambda: server.usage() + server.forwards()  # noqa: E731
            closed_loop(client, args.max_batch, 0, 2, probe)
            rows = []
            for c in levels:
                r = closed_loop(client, c, args.warmup_seconds, args.level_seconds, probe)
                faults0, cpu0, fw0, rows0 = r.pop("server_before")
                faults1, cpu1, fw1, rows1 = r.pop("server_after")
                r["offline_samples_per_s"] = offline
                r["fraction_of_offline"] = r["samples_per_s"] / offline
                r["mean_rows_per_forward"] = (rows1 - rows0) / max(1.0, fw1 - fw0)
                r["server_cpu_s_per_sample"] = (cpu1 - cpu0) / r["requests"]
                r["server_faults_per_sample"] = (faults1 - faults0) / r["requests"]
                rows.append(r)
                print(f"{mode} closed c={c}: {r['samples_per_s']:.2f} samples/s "
                      f"({100 * r['fraction_of_offline']:.0f}% of offline), p50 {r['p50']:.2f}s "
                      f"p95 {r['p95']:.2f}s p99 {r['p99']:.2f}s; server {r['server_cpu_s_per_sample']:.3f} "
                      f"CPU-s and {r['server_faults_per_sample']:.0f} page faults per sample, "
                      f"{r['mean_rows_per_forward']:.1f} samples per forward, load generator "
                      f"{r['client_cpu_s_per_sample']:.3f} CPU-s per sample", flush=True)
            results["modes"][mode] = {"offline_samples_per_s": offline, "closed": rows}
        # Open loop: --open-rounds rounds, each mode once per round in turn, the same arrival times
        # for every mode within a round; latencies pooled per mode.
        pooled = {mode: [] for mode in modes}
        walls = {mode: 0.0 for mode in modes}
        if args.open_seconds > 0:
            for r in range(args.open_rounds):
                for mode in (modes if r % 2 == 0 else modes[::-1]):
                    o = open_loop(clients[mode], open_rate, args.open_seconds / args.open_rounds, seed=1 + r)
                    pooled[mode] += o["latencies"]
                    walls[mode] += o["seconds"]
                    print(f"{mode} open {open_rate:.2f}/s round {r + 1}/{args.open_rounds}: {o['requests']} "
                          f"requests, p50 {o['p50']:.2f}s p95 {o['p95']:.2f}s", flush=True)
        for mode in modes:
            lat = pooled[mode]
            o = {"rate": open_rate, "rounds": args.open_rounds, "requests": len(lat), "seconds": walls[mode],
                 "samples_per_s": len(lat) / walls[mode] if walls[mode] else float("nan"),
                 "p50": percentile(lat, 0.5), "p95": percentile(lat, 0.95), "p99": percentile(lat, 0.99),
                 "offline_samples_per_s": results["modes"][mode]["offline_samples_per_s"]}
            results["modes"][mode]["open"] = o
            print(f"{mode} open {open_rate:.2f}/s (pooled): {o['requests']} requests, p50 {o['p50']:.2f}s "
                  f"p95 {o['p95']:.2f}s p99 {o['p99']:.2f}s", flush=True)
        if args.screen_seconds > 0 and "step" in modes:
            # The same server and machine for both settings; rounds alternate their order.
            names = {pb.INTERACTIVE: "screen as INTERACTIVE (FIFO, before)",
                     pb.BATCH: "screen as BATCH (priorities)"}
            pooled = {p: [] for p in names}
            rates = {p: [] for p in names}
            for r in range(args.screen_rounds):
                order = [pb.INTERACTIVE, pb.BATCH] if r % 2 == 0 else [pb.BATCH, pb.INTERACTIVE]
                for p in order:
                    lat, rate = screen_and_interactive(clients["step"], args.screen_concurrency,
                                                       args.interactive_rate,
                                                       args.screen_seconds / args.screen_rounds, p, seed=7 + r)
                    pooled[p] += lat
                    rates[p].append(rate)
                    print(f"{names[p]} round {r + 1}: interactive n={len(lat)} p50 {percentile(lat, 0.5):.2f}s "
                          f"p95 {percentile(lat, 0.95):.2f}s; screen {rate:.2f} samples/s", flush=True)
            results["screen"] = {names[p]: {"interactive_requests": len(pooled[p]),
                                            "p50": percentile(pooled[p], 0.5),
                                            "p95": percentile(pooled[p], 0.95),
                                            "p99": percentile(pooled[p], 0.99),
                                            "screen_samples_per_s": sum(rates[p]) / len(rates[p])}
                                 for p in names}
    finally:
        for server in servers.values():
            server.stop()

    print()
    print("| mode | load | samples/s | offline | % of offline | rows/forward | p50 s | p95 s | p99 s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for mode, r in results["modes"].items():
        for row in r["closed"]:
            print(f"| {mode} | closed c={row['concurrency']} | {row['samples_per_s']:.2f} | "
                  f"{row['offline_samples_per_s']:.2f} | {100 * row['fraction_of_offline']:.0f}% | "
                  f"{row['mean_rows_per_forward']:.1f} | {row['p50']:.2f} | {row['p95']:.2f} | {row['p99']:.2f} |")
        o = r["open"]
        print(f"| {mode} | open Poisson {o['rate']:.2f}/s | {o['samples_per_s']:.2f} | "
              f"{o['offline_samples_per_s']:.2f} | {100 * o['samples_per_s'] / o['offline_samples_per_s']:.0f}% | "
              f"| {o['p50']:.2f} | {o['p95']:.2f} | {o['p99']:.2f} |")
    if "screen" in results:
        print()
        print(f"| screen ({args.screen_concurrency} clients) | interactive requests | p50 s | p95 s | p99 s | "
              "screen samples/s |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, r in results["screen"].items():
            print(f"| {name} | {r['interactive_requests']} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | "
                  f"{r['screen_samples_per_s']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
