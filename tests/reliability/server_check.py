#!/usr/bin/env python3
"""The real cellflux-server against bad input, overload, deadlines, cancellation, slow /metrics
clients, reload and SIGTERM under load (issue 19). Each case asserts the gRPC code and that nothing
accepted was lost.  server_check.py BUILD_DIR   → exit 0 pass, 1 fail, 77 skip."""
import os
import shutil
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (Env, Fail, Server, check, png16, png_header, raw_image,  # noqa: E402
                    remember_perturbations, request, say)


def code_of(fn):
    import grpc
    try:
        fn()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


def bad_inputs(srv, pb):
    import grpc
    info = srv.info
    stub = srv.stub
    S, C, G = info.image_size, list(info.channel_names), len(info.gene_ids)

    def predict(r, timeout=60):
        return lambda: stub.Predict(r, timeout=timeout)

    cases = []
    r = request(pb, info, pert="BRD-NOT-IN-VOCAB")
    cases.append(("unknown perturbation", r, grpc.StatusCode.INVALID_ARGUMENT, "vocabulary"))
    r = request(pb, info, pert="x" * 8192)
    cases.append(("8 KB perturbation id", r, grpc.StatusCode.INVALID_ARGUMENT, "x" * 64 + "…"))
    r = request(pb, info)
    r.ClearField("data")
    r.ref.plate, r.ref.well = "24277", "a01"
    cases.append(("bank ref without a bank", r, grpc.StatusCode.NOT_FOUND, "no control bank"))
    r = request(pb, info, image=raw_image(pb, S, C[:-1]))
    cases.append(("wrong channel count", r, grpc.StatusCode.INVALID_ARGUMENT, "channels"))
    r = request(pb, info, image=raw_image(pb, S // 2, C))
    cases.append(("image too small", r, grpc.StatusCode.INVALID_ARGUMENT, "at least"))
    r = request(pb, info, values=[0.1] * (G + 1))
    cases.append(("expression length", r, grpc.StatusCode.INVALID_ARGUMENT, "values"))
    r = request(pb, info, values=[float("nan")] + [0.1] * (G - 1))
    cases.append(("NaN expression", r, grpc.StatusCode.INVALID_ARGUMENT, "finite"))
    r = request(pb, info, values=[0.1] * (G - 1) + [1e30])
    cases.append(("expression 1e30", r, grpc.StatusCode.INVALID_ARGUMENT,
                  f"gene {info.gene_ids[G - 1]} is 1e+30"))
    img = raw_image(pb, S, C)
    img.channels[1].encoding = pb.PNG
    img.channels[1].data = b"\x89PNG\r\n\x1a\n" + b"garbage" * 10
    cases.append(("corrupt PNG", request(pb, info, image=img), grpc.StatusCode.INVALID_ARGUMENT,
                  "PNG"))
    img = raw_image(pb, S, C)
    img.channels[2].encoding = pb.TIFF
    img.channels[2].data = b"II*\x00" + b"\xff" * 40
    cases.append(("corrupt TIFF", request(pb, info, image=img), grpc.StatusCode.INVALID_ARGUMENT,
                  "TIFF"))
    img = pb.Image(height=100000, width=100000)  # header-declared bomb: 100000² per channel
    for name in C:
        img.channels.add(name=name, encoding=pb.PNG, data=png_header(100000, 100000))
    cases.append(("PNG header bomb", request(pb, info, image=img),
                  grpc.StatusCode.INVALID_ARGUMENT, "largest accepted side"))
    r = request(pb, info, steps=info.limits.max_steps + 1)
    cases.append(("num_steps over the limit", r, grpc.StatusCode.INVALID_ARGUMENT, "num_steps"))
    r = request(pb, info, samples=info.limits.max_samples + 1)
    cases.append(("num_samples over the limit", r, grpc.StatusCode.INVALID_ARGUMENT, "num_samples"))
    r = request(pb, info, samples=5)  # --max-queue 4
    cases.append(("num_samples beyond --max-queue", r, grpc.StatusCode.INVALID_ARGUMENT,
                  "--max-queue"))
    for name, r, want, text in cases:
        got, details = code_of(predict(r))
        check(got == want and text in details and len(details) < 600,
              f"{name}: {want.name} ({got.name}: {details[:120]!r})")


def png_bomb_memory(srv, pb):
    """A PNG inside the size limits that inflates to 5 × 8192²: decoded, cropped, released."""
    info = srv.info
    before = srv.rss_bytes()
    bomb = png16(8192, 8192)
    img = pb.Image(height=8192, width=8192)
    for name in info.channel_names:
        img.channels.add(name=name, encoding=pb.PNG, data=bomb)
    r = request(pb, info, image=img, steps=2)
    srv.stub.Predict(r, timeout=300)
    after = srv.rss_bytes()
    growth = (after - before) / 2**20
    say(f"PNG bomb ({len(bomb) / 1024:.0f} KiB/channel → 5 × 8192² × 16 bit): RSS "
        f"{before / 2**20:.0f} → {after / 2**20:.0f} MiB")
    check(growth < 150, f"a 5 × 8192² PNG request leaves < 150 MiB behind (grew {growth:.0f} MiB)")


def seeds(srv, pb):
    info = srv.info
    s = 12345
    a = srv.stub.Predict(request(pb, info, seed=s), timeout=120)
    b = srv.stub.Predict(request(pb, info, seed=s + 2**32), timeout=120)
    check(a.predictions[0].image.SerializeToString() != b.predictions[0].image.SerializeToString(),
          "seeds s and s + 2^32 give different samples")
    w = srv.stub.Predict(request(pb, info, seed=2**64 - 1, samples=2), timeout=120)
    z = srv.stub.Predict(request(pb, info, seed=0), timeout=120)
    check([p.seed for p in w.predictions] == [2**64 - 1, 0] and
          w.predictions[1].SerializeToString() == z.predictions[0].SerializeToString(),
          "sample seeds wrap modulo 2^64 and sample k reproduces alone")


def deadline_and_cancel(srv, pb):
    import grpc
    info = srv.info
    before_d = srv.counter("cellflux_requests_total", method="Predict", code="DEADLINE_EXCEEDED")
    before_c = srv.counter("cellflux_requests_total", method="Predict", code="CANCELLED")
    got, _ = code_of(lambda: srv.stub.Predict(request(pb, info, steps=1000), timeout=0.5))
    check(got == grpc.StatusCode.DEADLINE_EXCEEDED, "a call past its deadline: DEADLINE_EXCEEDED")
    future = srv.stub.Predict.future(request(pb, info, steps=1000, seed=2), timeout=120)
    time.sleep(0.5)  # let it reach the batch (either way the code must be CANCELLED)
    future.cancel()
    check(future.cancelled() or future.code() == grpc.StatusCode.CANCELLED,
          "a client cancel: CANCELLED")
    for _ in range(600):
        d = srv.counter("cellflux_requests_total", method="Predict", code="DEADLINE_EXCEEDED")
        c = srv.counter("cellflux_requests_total", method="Predict", code="CANCELLED")
        if d > before_d and c > before_c:
            break
        time.sleep(0.1)
    check(d == before_d + 1, f"the server recorded the deadline as DEADLINE_EXCEEDED ({d - before_d})")
    check(c == before_c + 1, f"the server recorded the cancel as CANCELLED ({c - before_c})")


def slow_metrics_client(srv):
    slow = socket.create_connection(("127.0.0.1", srv.metrics_port))
    slow.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
    stop = threading.Event()

    def dribble():
        while not stop.wait(0.3):
            try:
                slow.send(b"a")
            except OSError:
                return
    t = threading.Thread(target=dribble)
    t.start()
    try:
        text = srv.scrape(timeout=20)
        check("cellflux_requests_total" in text, "a scrape succeeds while a client dribbles bytes")
    finally:
        stop.set()
        t.join()
        slow.close()


def reload_under_load(srv, pb, ckpt):
    info = srv.info
    with ThreadPoolExecutor(4) as pool:  # ≤ --max-queue 4 samples in flight: never refused
        futures = [pool.submit(srv.stub.Predict, request(pb, info, seed=100 + i, steps=4),
                               timeout=300) for i in range(16)]
        time.sleep(0.2)
        srv.proc.send_signal(signal.SIGHUP)
        results = [f.result() for f in futures]
    check(all(len(r.predictions) == 1 for r in results), "SIGHUP under load: 16/16 answered OK")
    for _ in range(600):
        if srv.log_text().count("serving model") >= 2:
            break
        time.sleep(0.1)
    check(srv.log_text().count("serving model") >= 2, "the reload swapped the model in")
    # A corrupt checkpoint: the reload fails, the old model keeps serving.
    weights = os.path.join(ckpt, "model.safetensors")
    shutil.copy(weights, weights + ".bak")
    with open(weights, "r+b") as f:
        f.write(b"\x00" * 16)
    srv.proc.send_signal(signal.SIGHUP)
    for _ in range(600):
        if srv.counter("cellflux_reload_failures_total") >= 1:
            break
        time.sleep(0.1)
    shutil.move(weights + ".bak", weights)
    check(srv.counter("cellflux_reload_failures_total") == 1, "a corrupt reload is counted")
    r = srv.stub.Predict(request(pb, info, seed=5), timeout=120)
    check(len(r.predictions) == 1, "and the old model still serves")


def sigterm_under_load(env, ckpt, pb):
    srv = Server(env, ckpt, name="drain", extra=["--drain-grace-s", "60", "--max-batch", "4"])
    remember_perturbations(srv.stub, pb, srv.info)
    info = srv.info
    import grpc
    idle = grpc.insecure_channel(srv.addr)  # an idle client connection stays open throughout
    from cellflux.v1 import cellflux_pb2_grpc
    cellflux_pb2_grpc.CellFluxStub(idle).GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    pool = ThreadPoolExecutor(8)
    futures = [pool.submit(srv.stub.Predict, request(pb, info, seed=200 + i, steps=100),
                           timeout=300) for i in range(8)]
    for _ in range(300):  # all 8 accepted (queued or in the batch) before the signal
        if srv.counter("cellflux_queue_depth") + srv.counter("cellflux_active_samples") >= 8:
            break
        time.sleep(0.1)
    srv.proc.send_signal(signal.SIGTERM)
    results = []
    for f in futures:
        try:
            results.append(len(f.result().predictions))
        except grpc.RpcError as e:
            results.append(e.code().name)
    answered = time.monotonic()
    rc = srv.proc.wait(timeout=120)
    lag = time.monotonic() - answered
    pool.shutdown()
    idle.close()
    srv.channel.close()
    check(results == [1] * 8, f"SIGTERM under load: 8/8 in-flight answered OK ({results})")
    check(rc == 0, f"the server exits 0 after draining (rc {rc})")
    check(lag < 4, f"exit {lag:.1f} s after the last answer with an idle connection open (< 4 s)")


def startup_messages(env, ckpt):
    out = env.run([env.server, "--help"], os.path.join(env.tmp, "help.txt"))
    text = open(os.path.join(env.tmp, "help.txt")).read()
    check(out.returncode == 0 and "SIGHUP" in text and "reload" in text, "--help explains SIGHUP reload")
    token = os.path.join(env.tmp, "token")
    with open(token, "w") as f:
        f.write("secret\n")
    srv = Server(env, ckpt, name="token", extra=["--auth-token-file", token], metrics=False)
    srv.stop()
    check("WARNING" in srv.log_text() and "plaintext" in srv.log_text(),
          "a token over a plaintext port logs a warning at start-up")


def main():
    env = Env(sys.argv[1])
    from cellflux.v1 import cellflux_pb2 as pb
    ckpt = os.path.join(env.tmp, "ckpt")
    env.init_checkpoint(ckpt)
    srv = Server(env, ckpt, extra=["--max-queue", "4", "--max-batch", "4"])
    try:
        remember_perturbations(srv.stub, pb, srv.info)
        bad_inputs(srv, pb)
        seeds(srv, pb)
        deadline_and_cancel(srv, pb)
        slow_metrics_client(srv)
        png_bomb_memory(srv, pb)
        reload_under_load(srv, pb, ckpt)
        rc = srv.stop()
        check(rc == 0, "SIGTERM: exit 0")
    finally:
        srv.kill()
    sigterm_under_load(env, ckpt, pb)
    startup_messages(env, ckpt)
    shutil.rmtree(env.tmp, ignore_errors=True)
    say("PASS")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        say(f"FAIL: {e}")
        sys.exit(1)
