#!/usr/bin/env python3
"""The real cellflux-train against kill -9 and damaged checkpoint roots (issue 19.1): a resumed
run continues bit-identically, and `flow --resume` never discards progress — an empty or
dangling `latest` falls back to the newest checkpoint that loads (saying so), a newer step
directory that cannot load is a clear error, and a fresh run never overwrites checkpoints.
  trainer_check.py BUILD_DIR   → exit 0 pass, 1 fail, 77 skip."""
import filecmp
import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SRC, Env, Fail, check, say  # noqa: E402

SETS = ["gene_ae.steps=5", "vae.steps=2", "vae.batch_size=4", "flow.steps=12",
        "flow.checkpoint_every=2", "flow.keep_last=100", "flow.val_every=1000", "flow.val_pairs=2",
        "flow.val_num_steps=2", "flow.global_batch=8", "flow.micro_batch=8", "flow.log_every=2",
        "flow.warmup_steps=0"]


def train(env, work, data, stage, *extra, sets=(), log=None):
    args = [env.train, stage, "--config", f"{SRC}/configs/demo.yaml", "--data-dir", data,
            "--work-dir", work, "--threads", "1"]
    for s in SETS + list(sets):
        args += ["--set", s]
    args += list(extra)
    log = log or os.path.join(work + f".{stage}.log")
    return env.run(args, log, cwd=SRC), open(log).read()


def main():
    env = Env(sys.argv[1])
    tmp = env.tmp
    say("synthetic plates + prepare + gene-ae/vae/encode")
    r = env.run([env.tool, "synth", "--out", f"{tmp}/synth", "--plates", "1", "--compounds", "6",
                 "--image-size", "96x96", "--sites", "2", "--wells-per-plate", "40",
                 "--l1000-plates", "2"], f"{tmp}/synth.log")
    if r.returncode:
        raise Fail("synth: " + open(f"{tmp}/synth.log").read()[-2000:])
    data = f"{tmp}/data"
    r = env.run([env.train, "prepare", "--images", f"{tmp}/synth/images", "--platemaps",
                 f"{tmp}/synth/platemaps", "--l1000", f"{tmp}/synth/l1000/replicate_level_l1k.csv",
                 "--out", data, "--test-perturbations", "1", "--val-fraction", "0.2", "--seed", "0"],
                f"{tmp}/prepare.log")
    if r.returncode:
        raise Fail("prepare: " + open(f"{tmp}/prepare.log").read()[-2000:])
    ref = f"{tmp}/ref"
    for stage in ("gene-ae", "vae", "encode"):
        r, log = train(env, ref, data, stage)
        if r.returncode:
            raise Fail(f"{stage}: {log[-2000:]}")

    say("reference: flow to step 12 without interruption")
    r, log = train(env, ref, data, "flow", "--resume")
    check(r.returncode == 0, "uninterrupted flow run")

    say("kill -9 during training, then --resume")
    work = f"{tmp}/killed"
    shutil.copytree(ref, work, ignore=shutil.ignore_patterns("checkpoints"))
    args = [env.train, "flow", "--config", f"{SRC}/configs/demo.yaml", "--data-dir", data,
            "--work-dir", work, "--threads", "1", "--resume"]
    for s in SETS:
        args += ["--set", s]
    proc = subprocess.Popen(args, cwd=SRC, stdout=open(f"{tmp}/killed.log", "w"),
                            stderr=subprocess.STDOUT)
    ckpts = f"{work}/checkpoints"
    for _ in range(3000):
        if os.path.isfile(f"{ckpts}/step-0000004/config.json") or proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check(not os.path.exists(f"{ckpts}/step-0000012"), "killed before the end (no step-12 yet)")
    r, log = train(env, work, data, "flow", "--resume")
    check(r.returncode == 0 and "resumed from" in log, "resumed after kill -9")
    same = all(filecmp.cmp(f"{ref}/checkpoints/step-0000012/{f}", f"{ckpts}/step-0000012/{f}",
                           shallow=False) for f in ("model.safetensors", "trainer_state/raw.safetensors"))
    check(same, "the resumed run's step 12 is bit-identical to the uninterrupted one")

    say("damaged roots")
    step6 = open(f"{ckpts}/step-0000006/model.safetensors", "rb").read()
    with open(f"{ckpts}/latest", "w"):
        pass  # empty
    r, log = train(env, work, data, "flow", "--resume", sets=["flow.steps=14"])
    check(r.returncode == 0 and "unusable" in log and "resumed from" in log and "step 12" in log,
          "empty latest: resumed from the newest checkpoint (step 12), saying why")
    check(open(f"{ckpts}/step-0000006/model.safetensors", "rb").read() == step6,
          "older step directories untouched")
    with open(f"{ckpts}/latest", "w") as f:
        f.write("step-0000099\n")  # dangling
    r, log = train(env, work, data, "flow", "--resume", sets=["flow.steps=16"])
    check(r.returncode == 0 and "step-0000099" in log and os.path.isdir(f"{ckpts}/step-0000016"),
          "dangling latest: resumed from the newest and went on")
    os.remove(f"{ckpts}/step-0000016/config.json")
    r, log = train(env, work, data, "flow", "--resume", sets=["flow.steps=18"])
    check(r.returncode == 2 and "step-0000016" in log and "no config.json" in log and
          not os.path.exists(f"{ckpts}/step-0000018"),
          "newest step directory without config.json: a clear error (exit 2), nothing written")
    r, log = train(env, work, data, "flow", sets=["flow.steps=18"])
    check(r.returncode == 2 and "--resume" in log and os.path.isdir(f"{ckpts}/step-0000002"),
          "a fresh run refuses a root with checkpoints (exit 2)")
    shutil.rmtree(tmp, ignore_errors=True)
    say("PASS")


if __name__ == "__main__":
    try:
        main()
    except Fail as e:
        say(f"FAIL: {e}")
        sys.exit(1)
