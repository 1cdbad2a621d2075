"""Shared plumbing of the reliability suite (tests/reliability/README.md): paths, stubs, a server
process with its log and RSS, and small request builders for the tiny random checkpoint."""
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

PY = "/usr/bin/python3"
SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Fail(Exception):
    pass


def say(msg):
    print(f"[reliability] {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise Fail(msg)
    say(f"ok: {msg}")


class Env:
    """Binaries of BUILD_DIR, a temp dir and the generated Python stubs."""

    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.tool = os.path.join(self.build, "common/tools/cellflux-tool")
        self.train = os.path.join(self.build, "trainer/cellflux-train")
        self.server = os.path.join(self.build, "server/cellflux-server")
        for b in (self.tool, self.train, self.server):
            if not os.access(b, os.X_OK):
                say(f"SKIP: {b} not built")
                sys.exit(77)
        self.tmp = tempfile.mkdtemp(prefix="cellflux-reliability.")
        stubs = os.path.join(self.tmp, "stubs")
        os.makedirs(stubs)
        plugin = subprocess.run(["sh", "-c", "command -v grpc_python_plugin"], capture_output=True,
                                text=True).stdout.strip()
        subprocess.run(["protoc", f"--proto_path={SRC}/proto", f"--python_out={stubs}",
                        f"--grpc_out={stubs}", f"--plugin=protoc-gen-grpc={plugin}",
                        f"{SRC}/proto/cellflux/v1/cellflux.proto"], check=True)
        sys.path.insert(0, stubs)

    def run(self, args, log, **kw):
        with open(log, "w") as f:
            return subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, **kw)

    def init_checkpoint(self, out, perturbations=8):
        r = self.run([self.tool, "init-checkpoint", "--config", f"{SRC}/configs/tiny.json", "--out",
                      out, "--perturbations", str(perturbations)], out + ".log")
        if r.returncode != 0:
            raise Fail(f"init-checkpoint failed: {open(out + '.log').read()[-2000:]}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """cellflux-server on loopback with /metrics, its log in tmp/<name>.log."""

    def __init__(self, env, checkpoint, name="server", extra=(), metrics=True):
        self.env = env
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.metrics_port = free_port() if metrics else None
        self.log = os.path.join(env.tmp, name + ".log")
        args = [env.server, "--checkpoint", checkpoint, "--listen", self.addr, "--threads", "1",
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}" if metrics else ""]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        import grpc
        from cellflux.v1 import cellflux_pb2_grpc
        self.channel = grpc.insecure_channel(self.addr)
        self.stub = cellflux_pb2_grpc.CellFluxStub(self.channel)
        from cellflux.v1 import cellflux_pb2 as pb
        for _ in range(600):
            if self.proc.poll() is not None:
                raise Fail(f"server exited during start-up:\n{self.log_text()[-3000:]}")
            try:
                self.info = self.stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=2)
                break
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED:  # up, and wants a token
                    self.info = None
                    break
                time.sleep(0.2)
        else:
            raise Fail("server did not start in 120 s")

    def log_text(self):
        return open(self.log, errors="replace").read()

    def rss_bytes(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise Fail("no VmRSS")

    def scrape(self, timeout=20):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=timeout) as r:
            return r.read().decode()

    def counter(self, name, **labels):
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        total = 0.0
        for line in self.scrape().splitlines():
            m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
            if not m or m.group(1) != name:
                continue
            got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if all(got.get(k) == v for k, v in labels.items()):
                total += float(m.group(3))
        return total

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise Fail(f"server did not exit {timeout} s after signal {sig}")
        self.channel.close()
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def raw_image(pb, size, channels, value=100):
    img = pb.Image(height=size, width=size)
    for name in channels:
        img.channels.add(name=name, encoding=pb.RAW_U16_LE,
                         data=struct.pack("<H", value) * (size * size))
    return img


def png16(width, height, fill=0):
    """A 16-bit grayscale PNG; a large one of zeros is a decompression bomb of a few hundred KB."""
    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)
    row = b"\x00" + struct.pack(">H", fill) * width
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def png_header(width, height):
    """Only a PNG's signature and IHDR chunk: what the server reads before decoding."""
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    c = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + c +
            struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF))


def request(pb, info, seed=1, samples=1, steps=2, image=None, values=None, pert=None):
    r = pb.PredictRequest(perturbation_id=pert or "", request_id=f"rel-{seed}")
    if pert is None:
        r.perturbation_id = list_first_perturbation(info)
    r.data.image.CopyFrom(image or raw_image(pb, info.image_size, info.channel_names))
    r.data.expression.values.extend(values if values is not None else [0.1] * len(info.gene_ids))
    r.options.seed = seed
    r.options.num_samples = samples
    r.options.num_steps = steps
    return r


_FIRST = {}


def list_first_perturbation(info):
    return _FIRST[info.model_id]


def remember_perturbations(stub, pb, info):
    page = stub.ListPerturbations(pb.ListPerturbationsRequest(page_size=10), timeout=10)
    _FIRST[info.model_id] = page.perturbations[0].id
    return [p.id for p in page.perturbations]
