"""A real cellflux-server for the Python package's tests, made the way scripts/e2e_check.sh does:
cellflux-tool synth → cellflux-train prepare → cellflux-tool init-checkpoint (configs/tiny.json,
random weights) → cellflux-server with the control bank, TLS (a self-signed certificate from
openssl) and a bearer token, on a free loopback port.

    server = RealServer(build_dir); server.start()  ... server.stop()
    server.client()  → a cellflux.Client with the CA and the token

The binaries come from CELLFLUX_BUILD_DIR (CTest sets it); SkipTest when they are not built.
"""
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PACKAGE_DIR = os.path.join(SRC, "client", "python")
if PACKAGE_DIR not in sys.path:
    sys.path.insert(0, PACKAGE_DIR)

import cellflux  # noqa: E402

TOKEN = "python-test-token"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RealServer:
    def __init__(self, build_dir=None):
        self.build = os.path.abspath(build_dir or os.environ.get("CELLFLUX_BUILD_DIR",
                                                                 os.path.join(SRC, "build")))
        self.tool = os.path.join(self.build, "common", "tools", "cellflux-tool")
        self.train = os.path.join(self.build, "trainer", "cellflux-train")
        self.server = os.path.join(self.build, "server", "cellflux-server")
        self.tmp = None
        self.process = None

    def built(self):
        return all(os.access(b, os.X_OK) for b in (self.tool, self.train, self.server))

    def start(self):
        if not self.built():
            raise unittest.SkipTest(f"the cellflux binaries are not built in {self.build}")
        self.tmp = tempfile.mkdtemp(prefix="cellflux-pytest.")
        t = self.tmp
        self._run("synth", self.tool, "synth", "--out", f"{t}/synth", "--plates", "1",
                  "--compounds", "6", "--image-size", "96x96", "--sites", "2",
                  "--wells-per-plate", "40", "--l1000-plates", "2")
        self._run("prepare", self.train, "prepare", "--images", f"{t}/synth/images",
                  "--platemaps", f"{t}/synth/platemaps", "--l1000",
                  f"{t}/synth/l1000/replicate_level_l1k.csv", "--out", f"{t}/data",
                  "--test-perturbations", "1", "--val-fraction", "0", "--seed", "0")
        self._run("init-checkpoint", self.tool, "init-checkpoint", "--config",
                  f"{SRC}/configs/tiny.json", "--out", f"{t}/ckpt", "--perturbations", "8")
        self._run("openssl", "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                  "-keyout", f"{t}/key.pem", "-out", f"{t}/cert.pem", "-days", "2", "-subj",
                  "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")
        self.ca = f"{t}/cert.pem"
        self.token_file = f"{t}/token"
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        with open(f"{t}/data/controls_cp.csv") as f:
            rows = list(csv.DictReader(f))
        self.bank_wells = [(r["plate"], r["well"]) for r in rows]
        self.bank_sites = sum(len(r["site_ids"].split(";")) for r in rows)
        with open(f"{t}/ckpt/perturbations.tsv") as f:
            self.vocabulary = [r["broad_id"] for r in csv.DictReader(f, delimiter="\t")]
        self.address = f"127.0.0.1:{free_port()}"
        self.log_path = f"{t}/server.log"
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                [self.server, "--checkpoint", f"{t}/ckpt", "--listen", self.address,
                 "--metrics-listen", "", "--controls", f"{t}/data", "--threads", "1",
                 "--max-batch", "8", "--drain-grace-s", "10", "--tls-cert", self.ca,
                 "--tls-key", f"{t}/key.pem", "--auth-token-file", self.token_file],
                stdout=log, stderr=subprocess.STDOUT)
        self._wait_serving(180)

    def client(self, **kwargs):
        kwargs.setdefault("tls", self.ca)
        kwargs.setdefault("token", TOKEN)
        return cellflux.Client(self.address, **kwargs)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def _wait_serving(self, seconds):
        # Start-up, not test logic: poll until the model answers (a fresh process has no other
        # signal to wait on), failing as soon as the process exits.
        # A fresh channel per try: a channel that was refused backs off its reconnects (1 s,
        # 1.6 s, ...) and would report UNAVAILABLE for seconds after the server is up.
        deadline = time.monotonic() + seconds
        while True:
            with self.client(retries=0) as probe:
                try:
                    probe.info(timeout=2)
                    return
                except cellflux.CellFluxError:
                    pass
            if self.process.poll() is not None:
                raise RuntimeError(f"cellflux-server exited {self.process.returncode} during "
                                   f"start-up:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"cellflux-server not serving after {seconds} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.25)

    def _run(self, what, *argv):
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}")
