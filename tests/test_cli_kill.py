"""Killing the command line at any moment leaves all of its outputs or none, and no temporary
file: SIGTERM at seeded random moments of real runs, and signals at chosen steps in-process.
"""

import contextlib
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from bayes_restore import cli
from bayes_restore.io import read_image, write_image

pytest.importorskip("png")
pytest.importorskip("tifffile")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SHAPE = (64, 64)
OUTPUTS = ("m.png", "s.tif", "lo.tif", "hi.tif")
ARGS = ["denoise", "in.png", "-o", "m.png", "--method", "mcmc", "--num-samples", "20",
        "--sigma", "0.05", "--weight", "0.05", "--std", "s.tif", "--interval", "lo.tif",
        "hi.tif", "--quiet"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill_source")
    rng = np.random.default_rng(0)
    clean = np.kron(rng.random((8, 8)), np.ones((8, 8)))
    write_image(folder / "in.png", np.clip(clean + 0.05 * rng.standard_normal(SHAPE), 0, 1))
    return folder / "in.png"


def all_or_nothing(folder, outputs=OUTPUTS):
    """Assert: no temporary file, and either every output (complete) or none."""
    names = sorted(p.name for p in folder.iterdir())
    assert [n for n in names if n.startswith(".")] == [], names
    present = [n for n in outputs if (folder / n).exists()]
    if present:
        assert sorted(present) == sorted(outputs), names
        for name in outputs:
            if name in OUTPUTS:
                assert read_image(folder / name)[0].shape == SHAPE, name
            else:
                assert (folder / name).stat().st_size > 0, name
    return bool(present)


# A fork server: one process pays the imports (torch: seconds) once, then forks a child per
# run; each child is a real process running ``cli.main`` that gets the real SIGTERM.
SERVER = r"""
import json, os, sys
from bayes_restore import cli
import bayes_restore.io, png, tifffile  # noqa: F401 - the slow imports, before forking

args = json.loads(sys.argv[1])
print("ready", flush=True)
for line in sys.stdin:
    folder, log = line.rstrip("\n").split("\t")
    pid = os.fork()
    if pid == 0:
        os.chdir(folder)
        null = os.open(os.devnull, os.O_WRONLY)
        err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(null, 1)
        os.dup2(err, 2)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        try:
            code = cli.main(args)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        sys.stderr.flush()
        os._exit(code)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), flush=True)
"""


@pytest.fixture(scope="module")
def server():
    import json

    proc = subprocess.Popen([sys.executable, "-c", SERVER, json.dumps(ARGS)], env=ENV,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    proc.stdin.close()
    proc.wait(timeout=60)
    proc.stdout.close()


def launch(server, folder, log):
    server.stdin.write(f"{folder}\t{log}\n")
    server.stdin.flush()
    return int(server.stdout.readline())


def finish(server):
    return int(server.stdout.readline())


def test_sigterm_at_random_moments(tmp_path, source, server):
    reference = tmp_path / "reference"
    reference.mkdir()
    shutil.copy(source, reference)
    t0 = time.monotonic()
    launch(server, reference, tmp_path / "reference.log")
    code = finish(server)
    duration = time.monotonic() - t0
    assert code == 0, (tmp_path / "reference.log").read_text()
    assert all_or_nothing(reference)

    rng = random.Random(20240611)
    # kills at any moment of the run, and kills just as the writing begins
    plans = [("random", rng.uniform(0.0, 1.1) * duration) for _ in range(5)]
    plans += [("writing", rng.uniform(0.0, 0.01)) for _ in range(3)]
    outcomes = []
    for k, (kind, delay) in enumerate(plans):
        folder = tmp_path / f"kill{k}"
        folder.mkdir()
        shutil.copy(source, folder)
        log = tmp_path / f"kill{k}.log"
        pid = launch(server, folder, log)
        t0 = time.monotonic()
        if kind == "writing":  # wait for the first temporary file
            while time.monotonic() - t0 < 60:
                with os.scandir(folder) as entries:
                    if any(e.name.startswith(".") for e in entries):
                        break
                time.sleep(0.0005)
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):  # it may have finished
            os.kill(pid, signal.SIGTERM)
        code = finish(server)
        err = log.read_text()
        # 143: interrupted and cleaned up; 0: it finished before the signal
        assert code in (0, 128 + signal.SIGTERM), err
        if code:
            assert err.strip().splitlines() == ["bayes-restore: interrupted by SIGTERM"], err
        complete = all_or_nothing(folder)
        assert complete or code != 0
        outcomes.append((kind, round(delay, 3), code, complete))
    # the plan must have interrupted real runs, not only watched them finish
    assert sum(code == 128 + signal.SIGTERM for _, _, code, _ in outcomes) >= 3, outcomes


def test_sigterm_in_a_fresh_process(tmp_path, source):
    """The real entry point (``python -m bayes_restore``): killed while writing."""
    shutil.copy(source, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "bayes_restore", *ARGS], cwd=tmp_path,
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 120:
        with os.scandir(tmp_path) as entries:
            if any(e.name.startswith(".") for e in entries):
                break
        time.sleep(0.0005)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 128 + signal.SIGTERM), err
    assert all_or_nothing(tmp_path) or proc.returncode != 0


# ------------------------------------------------------------------ in-process, exact moments


def run_here(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


FAST = ["denoise", "in.png", "-o", "m.png", "--prior", "gaussian", "--method", "exact",
        "--sigma", "0.05", "--scale", "0.05", "--std", "s.tif", "--interval", "lo.tif",
        "hi.tif", "--figure", "f.png", "--quiet"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("at", [1, 2, 4])
def test_signal_while_writing(tmp_path, source, monkeypatch, signum, at):
    from bayes_restore import io as bio

    shutil.copy(source, tmp_path)
    monkeypatch.chdir(tmp_path)
    real = bio.encode_image
    calls = []

    def encode_then_signal(path, data, depth):
        calls.append(path)
        real(path, data, depth)
        if len(calls) == at:
            os.kill(os.getpid(), signum)
            time.sleep(1)  # the handler interrupts this

    monkeypatch.setattr(bio, "encode_image", encode_then_signal)
    code, _, stderr = run_here(*FAST)
    assert code == 128 + signum
    assert stderr.strip() == f"bayes-restore: interrupted by {signal.Signals(signum).name}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]
    assert signal.getsignal(signum) is not None  # the old handlers are back


def test_signal_during_the_renames_waits_for_them(tmp_path, source, monkeypatch):
    shutil.copy(source, tmp_path)
    monkeypatch.chdir(tmp_path)
    real = os.replace
    renames = []

    def replace_then_signal(src, dst):
        renames.append(dst)
        if len(renames) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # held back until all renames are done
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_signal)
    code, _, _ = run_here(*FAST)
    monkeypatch.setattr(os, "replace", real)
    assert code == 128 + signal.SIGTERM
    assert all_or_nothing(tmp_path, OUTPUTS + ("f.png",))
    assert (tmp_path / "f.png").exists()


def test_existing_outputs_survive_an_interrupt(tmp_path, source, monkeypatch):
    from bayes_restore import io as bio

    shutil.copy(source, tmp_path)
    for name in OUTPUTS:
        (tmp_path / name).write_bytes(b"previous " + name.encode())
    monkeypatch.chdir(tmp_path)
    real = bio.encode_image

    def interrupted(path, data, depth):
        real(path, data, depth)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)

    monkeypatch.setattr(bio, "encode_image", interrupted)
    code, _, _ = run_here(*FAST, "--force")
    assert code == 128 + signal.SIGTERM
    for name in OUTPUTS:
        assert (tmp_path / name).read_bytes() == b"previous " + name.encode()
    assert not (tmp_path / "f.png").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
