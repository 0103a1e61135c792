"""Fuzzing the command line: every bad input is one line on stderr naming the option, exit 2.

In-process (``cli.main``) for speed, under an alarm so that nothing can hang; the real
process is covered by ``test_cli.py``.
"""

import contextlib
import io
import math
import os
import signal
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bayes_restore import cli
from bayes_restore.io import write_image

pytest.importorskip("png")
tifffile = pytest.importorskip("tifffile")

TIME_LIMIT = 30  # seconds per main() call: a hang fails the test instead of blocking the run


def run(*args):
    """``cli.main(args)`` -> (exit code, stdout, stderr), failing after TIME_LIMIT seconds."""
    out, err = io.StringIO(), io.StringIO()

    def too_long(signum, frame):
        raise TimeoutError(f"bayes-restore {' '.join(args)} took over {TIME_LIMIT} s")

    old = signal.signal(signal.SIGALRM, too_long)
    signal.alarm(TIME_LIMIT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    return code, out.getvalue(), err.getvalue()


def assert_user_error(code, stderr, *names):
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1, stderr
    assert lines[0].startswith("bayes-restore: error: "), stderr
    for name in names:
        assert name in lines[0], (name, lines[0])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder with good and bad inputs."""
    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    y = rng.random((16, 16))
    write_image(d / "ok.png", y)
    write_image(d / "mask_small.png", np.ones((8, 8)))
    write_image(d / "mask_dark.png", np.zeros((16, 16)))
    write_image(d / "tiny.png", np.ones((1, 5)))
    tifffile.imwrite(d / "pages.tif", np.stack([y, y, y]).astype(np.float32),
                     photometric="minisblack")
    (d / "folder.png").mkdir()
    (d / "junk.png").write_bytes(b"\x89PNG not really")
    (d / "empty.tif").write_bytes(b"")
    (d / "notes.txt").write_text("hello")
    (d / "text.npy").write_text("not an array")
    np.save(d / "cube.npy", np.ones((3, 3, 3)))
    np.save(d / "zeros.npy", np.zeros((3, 3)))
    np.save(d / "nan.npy", np.full((3, 3), np.nan))
    np.save(d / "huge.npy", np.ones((41, 41)))
    if hasattr(os, "mkfifo"):
        os.mkfifo(d / "fifo.png")  # opening it would block: must be refused unopened
    return d


@pytest.fixture
def in_files(files, monkeypatch):
    monkeypatch.chdir(files)
    yield files
    (files / "out.png").unlink(missing_ok=True)  # a failed test must not fail the next ones
    leftovers = [p.name for p in files.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers


BASE = ["denoise", "ok.png", "-o", "out.png"]
GIVEN = ["--sigma", "0.1", "--weight", "0.1"]


# --------------------------------------------------------------------- numbers and choices


def _float_ok(text, auto=False, low=0.0, high=math.inf, float32=True):
    """Whether the command line must accept ``text`` (the library's parameters are float32)."""
    if auto and text == "auto":
        return True
    try:
        v = float(text)
    except ValueError:
        return False
    if float32:
        with np.errstate(over="ignore"):
            v32 = float(np.float32(v))
        if not 0 < v32 < math.inf:
            return False
    return low < v < high


def _int_ok(text, low, high=math.inf):
    try:
        v = int(text)
    except ValueError:
        return False
    return low <= v <= high


NUMBER_OPTIONS = {
    "--sigma": lambda t: _float_ok(t, auto=True),
    "--scale": lambda t: _float_ok(t, auto=True),
    "--weight": _float_ok,
    "--beta": _float_ok,
    "--prob": lambda t: _float_ok(t, high=1.0, float32=False),
    "--tile": lambda t: _int_ok(t, 1),
    "--overlap": lambda t: _int_ok(t, 0),
    "--seed": lambda t: _int_ok(t, 0, 2**63 - 1),
    "--page": lambda t: _int_ok(t, 0, 0),  # ok.png has one page: any other is an error
    "--num-samples": lambda t: _int_ok(t, 1),
}

bad_numbers = st.one_of(
    st.sampled_from(["", "nan", "-nan", "inf", "-inf", "1e999", "0", "-0", "-1", "0.0",
                     "-1e-300", "1e-300", "1e39", "abc", "1,5", "0x10", "2**63", "1e3.5",
                     "--", "-", "auto", str(2**64), "9" * 400, "1 2", " ", "\n"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.text(max_size=12),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(sorted(NUMBER_OPTIONS)), value=bad_numbers,
       joined=st.booleans())
def test_bad_numbers_name_the_option(in_files, option, value, joined):
    assume(not NUMBER_OPTIONS[option](value))
    assume("\x00" not in value)
    args = [f"{option}={value}"] if joined else [option, value]
    code, _, stderr = run(*BASE, *args)
    assert_user_error(code, stderr, option)
    assert not (in_files / "out.png").exists()


CHOICES = {"--prior": "denoise", "--method": "denoise", "--device": "denoise", "--point": "denoise",
           "--factor": "superres", "--kernel": "superres", "--boundary": "deblur"}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(sorted(CHOICES)), value=st.text(min_size=1, max_size=10))
def test_bad_choices_name_the_option(in_files, option, value):
    valid = {"--prior": cli.PRIORS, "--method": ["map", "exact", "vi", "mcmc"],
             "--device": ["cpu", "cuda"], "--point": ["auto", "map", "mean"],
             "--factor": ["2", "3", "4"],
             "--kernel": ["box", "gaussian"], "--boundary": ["periodic", "valid"]}[option]
    assume(value.strip() not in valid and "\x00" not in value)
    command = CHOICES[option]
    extra = ["--psf", "box:3"] if command == "deblur" else []
    code, _, stderr = run(command, "ok.png", "-o", "out.png", *extra, f"{option}={value}")
    assert_user_error(code, stderr, option)


# --------------------------------------------------------------------- missing / unknown


@pytest.mark.parametrize(
    "args,names",
    [
        ([], ["required"]),
        (["restore"], ["invalid choice", "restore"]),
        (["denoise"], ["required", "input"]),
        (["denoise", "ok.png"], ["-o/--output"]),
        (["denoise", "ok.png", "-o"], ["-o/--output"]),
        (["denoise", "ok.png", "-o", "out.png", "--frobnicate"], ["--frobnicate"]),
        (["denoise", "ok.png", "-o", "out.png", "--sigma"], ["--sigma"]),
        (["denoise", "ok.png", "-o", "out.png", "--interval", "lo.tif"], ["--interval"]),
        (["denoise", "ok.png", "extra.png", "-o", "out.png"], ["extra.png"]),
        (["deblur", "ok.png", "-o", "out.png"], ["--psf"]),
        (["inpaint", "ok.png", "-o", "out.png"], ["--mask"]),
        (["demo", "--sigma", "-1"], ["--sigma"]),
        (["demo", "--seed", "x"], ["--seed"]),
        (["demo", "--psf", "box:3"], ["--psf"]),
    ],
)
def test_missing_and_unknown_options(in_files, args, names):
    code, _, stderr = run(*args)
    assert_user_error(code, stderr, *names)


@pytest.mark.parametrize(
    "args,names",
    [
        (GIVEN + ["--scale", "0.1"], ["--scale", "--weight"]),
        (GIVEN + ["--std", "s.tif"], ["--std", "--method"]),
        (GIVEN + ["--samples", "s.nc"], ["--samples"]),
        (GIVEN + ["--num-samples", "5"], ["--num-samples"]),
        (GIVEN + ["--overlap", "4"], ["--overlap", "--tile"]),
        (GIVEN + ["--method", "exact", "--std", "s.png"], ["--std", "TIFF"]),
        (GIVEN + ["--method", "exact", "--interval", "lo.tif", "hi.png"], ["--interval"]),
        (GIVEN + ["--figure", "f.pdf"], ["--figure"]),
        (GIVEN + ["--method", "mcmc", "--samples", "s.h5"], ["--samples"]),
        (["--prior", "gradient", "--beta", "1.5"], ["--scale", "--weight"]),
        (GIVEN + ["--prior", "tv", "--beta", "1.5"], ["--beta"]),
        (GIVEN + ["--device", "cuda"], ["--device"]),
        (GIVEN + ["--method", "exact"], ["--method exact", "--prior"]),
        (["--sigma", "1e-300", "--weight", "0.1"], ["--sigma", "float32"]),
        (GIVEN + ["--method", "exact", "--std", "out.png"], ["--std"]),
        (GIVEN + ["--method", "exact", "--std", "s.tif", "--interval", "s.tif", "h.tif"],
         ["--interval", "twice"]),
    ],
)
def test_bad_combinations(in_files, args, names):
    if "--device" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    code, _, stderr = run(*BASE, *args)
    assert_user_error(code, stderr, *names)


# --------------------------------------------------------------------- files


@pytest.mark.parametrize(
    "args,names",
    [
        (["denoise", "missing.png", "-o", "out.png"], ["missing.png", "no such file"]),
        (["denoise", "folder.png", "-o", "out.png"], ["folder.png", "directory"]),
        (["denoise", "fifo.png", "-o", "out.png"], ["fifo.png", "not a regular file"]),
        (["denoise", "junk.png", "-o", "out.png"], ["junk.png", "not a valid image"]),
        (["denoise", "empty.tif", "-o", "out.png"], ["empty.tif", "not a valid image"]),
        (["denoise", "notes.txt", "-o", "out.png"], ["notes.txt", "unsupported file type"]),
        (["denoise", "pages.tif", "-o", "out.png"], ["pages.tif", "3 pages", "--page"]),
        (["denoise", "pages.tif", "-o", "out.png", "--page", "3"], ["pages.tif", "page 3"]),
        (["denoise", "ok.png", "-o", "out.png", "--page", "1"], ["ok.png", "page 1"]),
        (["denoise", "tiny.png", "-o", "out.png"], ["tiny.png", "2x2"]),
        (["denoise", "ok.png", "-o", "folder.png", "--force"], ["-o", "directory"]),
        (["denoise", "ok.png", "-o", "ok.png", "--force"], ["-o", "input"]),
        (["denoise", "ok.png", "-o", "notes.txt/out.png"], ["-o", "not a directory"]),
        (["denoise", "ok.png", "-o", "out.jpg"], ["-o", ".png"]),
        (["demo", "--out", "notes.txt"], ["--out", "file"]),
    ],
)
def test_bad_files(in_files, args, names):
    if "fifo.png" in args and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    if args[0] != "demo":
        args = args + GIVEN
    code, _, stderr = run(*args)
    assert_user_error(code, stderr, *names)
    assert not (in_files / "out.png").exists()


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0,
                    reason="root reads files whatever their mode")
def test_unreadable_file(in_files):
    path = in_files / "locked.png"
    write_image(path, np.ones((8, 8)))
    path.chmod(0)
    try:
        code, _, stderr = run("denoise", "locked.png", "-o", "out.png", *GIVEN)
    finally:
        path.chmod(0o644)
        path.unlink()
    assert_user_error(code, stderr, "locked.png", "permission denied")


def test_permission_error_while_decoding_is_one_line(in_files, monkeypatch):
    from bayes_restore import io as bio

    def denied(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(bio, "_read_png", denied)
    code, _, stderr = run(*BASE, *GIVEN)
    assert_user_error(code, stderr, "ok.png", "permission denied")


@pytest.mark.parametrize(
    "psf",
    ["gaussian", "gaussian:", "gaussian:x", "gaussian:-1", "gaussian:0", "gaussian:nan",
     "gaussian:inf", "gaussian:1e9", "gaussian:1:4", "gaussian:1:-3", "gaussian:1:2:3",
     "gaussian:1:99", "box", "box:", "box:0", "box:-3", "box:1.5", "box:999999", "box:3:3",
     "blur:3", "missing.png", "missing.npy", "folder.png", "junk.png", "pages.tif",
     "text.npy", "cube.npy", "zeros.npy", "nan.npy", "huge.npy", "notes.txt"],
)
def test_bad_psf(in_files, psf):
    code, _, stderr = run("deblur", "ok.png", "-o", "out.png", "--psf", psf, *GIVEN)
    assert_user_error(code, stderr, "--psf")


@pytest.mark.parametrize("mask", ["missing.png", "folder.png", "junk.png", "pages.tif",
                                  "mask_small.png", "mask_dark.png", "notes.txt"])
def test_bad_mask(in_files, mask):
    code, _, stderr = run("inpaint", "ok.png", "-o", "out.png", "--mask", mask, *GIVEN)
    assert_user_error(code, stderr, "--mask")


def test_too_small_for_the_operator(in_files):
    write_image(in_files / "small.png", np.ones((3, 3)))
    try:
        code, _, stderr = run("superres", "small.png", "-o", "out.png", "--factor", "4",
                              *GIVEN)
        assert_user_error(code, stderr, "--factor")
        code, _, stderr = run("deblur", "small.png", "-o", "out.png", "--psf", "box:5",
                              "--boundary", "valid", *GIVEN)
        assert_user_error(code, stderr, "--psf")
    finally:
        (in_files / "small.png").unlink()
