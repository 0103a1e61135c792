"""The command line, as a user runs it: files in, files out, one-line errors with exit code 2."""

import subprocess
import sys

import numpy as np
import pytest

from bayes_restore.io import read_image, write_image

pytest.importorskip("png")
pytest.importorskip("tifffile")


def run(*args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "bayes_restore", *args], cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def noisy():
    rng = np.random.default_rng(0)
    clean = np.kron(rng.random((6, 6)), np.ones((8, 8)))
    return clean, np.clip(clean + 0.05 * rng.standard_normal(clean.shape), 0, 1)


@pytest.mark.parametrize(
    "name,depth,rgb",
    [("g8.png", 8, False), ("g16.png", 16, False), ("c8.png", 8, True), ("c16.tif", 16, True),
     ("g8.tif", 8, False), ("f32.tif", 32, False)],
)
def test_round_trip_keeps_depth_channels_and_improves_the_image(tmp_path, noisy, name, depth,
                                                                 rgb):
    clean, y = noisy
    if rgb:
        clean = np.stack([clean, clean[::-1], clean.T], -1)
        y = np.stack([y, y[::-1], y.T], -1)
    write_image(tmp_path / name, y, bit_depth=depth)
    out = "out" + (".tif" if name.endswith(".tif") else ".png")
    code, stdout, stderr = run("denoise", name, "-o", out, "--sigma", "0.05", "--weight",
                               "0.05", cwd=tmp_path)
    assert code == 0, stderr
    assert f"wrote {out}" in stdout
    restored, info = read_image(tmp_path / out)
    _, info_in = read_image(tmp_path / name)
    assert info.bit_depth == info_in.bit_depth and info.channels == info_in.channels
    assert restored.shape == y.shape
    assert np.abs(restored - clean).mean() < np.abs(y - clean).mean()


def test_uncertainty_outputs_and_samples(tmp_path, noisy):
    _, y = noisy
    write_image(tmp_path / "in.png", y, bit_depth=16)
    code, _, stderr = run(
        "denoise", "in.png", "-o", "mean.tif", "--prior", "gaussian", "--method", "exact",
        "--sigma", "0.05", "--scale", "0.05", "--std", "std.tif", "--interval", "lo.tif",
        "hi.tif", "--figure", "fig.png", "--samples", "draws.nc", "--quiet", cwd=tmp_path,
    )
    assert code == 0, stderr
    mean, _ = read_image(tmp_path / "mean.tif")
    std, _ = read_image(tmp_path / "std.tif")
    lo, _ = read_image(tmp_path / "lo.tif")
    hi, _ = read_image(tmp_path / "hi.tif")
    assert (lo <= mean + 1e-4).all() and (mean <= hi + 1e-4).all()
    assert 0 < std.mean() < 0.05
    assert (tmp_path / "fig.png").stat().st_size > 1000
    az = pytest.importorskip("arviz")
    idata = az.from_netcdf(tmp_path / "draws.nc")
    assert idata.posterior["image"].shape[:2] == (1, 1000)


def test_refuses_to_overwrite_outputs_and_never_the_input(tmp_path, noisy):
    _, y = noisy
    write_image(tmp_path / "in.png", y)
    (tmp_path / "out.png").write_bytes(b"keep me")
    code, _, stderr = run("denoise", "in.png", "-o", "out.png", "--sigma", "0.05", "--weight",
                          "0.1", cwd=tmp_path)
    assert code == 2 and "exists" in stderr and "--force" in stderr
    assert (tmp_path / "out.png").read_bytes() == b"keep me"
    before = (tmp_path / "in.png").read_bytes()
    code, _, stderr = run("denoise", "in.png", "-o", "./in.png", "--sigma", "0.05", "--weight",
                          "0.1", "--force", cwd=tmp_path)
    assert code == 2 and "input" in stderr
    assert (tmp_path / "in.png").read_bytes() == before
    write_image(tmp_path / "mask.png", np.ones_like(y))
    code, _, stderr = run("inpaint", "in.png", "-o", "mask.png", "--mask", "mask.png",
                          "--sigma", "0.05", "--weight", "0.1", "--force", cwd=tmp_path)
    assert code == 2 and "input" in stderr
    code, _, stderr = run("denoise", "in.png", "-o", "out.png", "--sigma", "0.05", "--weight",
                          "0.1", "--force", cwd=tmp_path)
    assert code == 0, stderr
    assert read_image(tmp_path / "out.png")[0].shape == y.shape


@pytest.mark.parametrize(
    "setup,args,message",
    [
        (None, ["missing.png"], "no such file"),
        ("junk", ["bad.png"], "not a valid image"),
        ("text", ["notes.txt"], "unsupported file type"),
        ("int32", ["deep.tif"], "unsupported sample type"),
        ("nan", ["nan.tif"], "NaN"),
        ("ok", ["in.png", "--sigma", "-1"], "--sigma"),
        ("ok", ["in.png", "--sigma", "zero"], "--sigma"),
        ("ok", ["in.png", "--method", "laplace"], "--method"),
        ("ok", ["in.png", "--prob", "1.5", "--sigma", "0.1", "--weight", "0.1"], "--prob"),
        ("ok", ["in.png", "--sigma", "0.1", "--weight", "0.1", "--std", "s.png"], "--std"),
        ("ok", ["in.png", "--sigma", "0.1", "--scale", "0.1", "--weight", "0.1"],
         "scale or weight"),
        ("ok", ["in.png", "--tile", "0"], "--tile"),
        ("ok", ["in.png", "--tile", "16", "--overlap", "-3"], "--overlap"),
        ("ok", ["in.png", "--overlap", "8"], "--overlap needs --tile"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, noisy, setup, args, message):
    _, y = noisy
    if setup == "junk":
        (tmp_path / "bad.png").write_bytes(b"not a png at all")
    elif setup == "text":
        (tmp_path / "notes.txt").write_text("hello")
    elif setup == "int32":
        import tifffile

        tifffile.imwrite(tmp_path / "deep.tif", (y * 1000).astype(np.int32))
    elif setup == "nan":
        y2 = y.copy()
        y2[3, 3] = np.nan
        import tifffile

        tifffile.imwrite(tmp_path / "nan.tif", y2.astype(np.float32))
    elif setup == "ok":
        write_image(tmp_path / "in.png", y)
    full = ["denoise", *args[:1], "-o", "out.png", *args[1:]]
    if "--sigma" not in args:
        full += ["--sigma", "0.1", "--weight", "0.1"]
    code, stdout, stderr = run(*full, cwd=tmp_path)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayes-restore: error:"), stderr
    assert message in lines[0]
    assert "Traceback" not in stderr
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    "command,extra,shape",
    [
        ("deblur", ["--psf", "gaussian:1.0"], (48, 48)),
        ("deblur", ["--psf", "box:3", "--boundary", "valid"], (50, 50)),
        ("superres", ["--factor", "2"], (96, 96)),
        ("inpaint", ["--mask", "mask.png"], (48, 48)),
    ],
)
def test_deblur_superres_inpaint(tmp_path, noisy, command, extra, shape):
    _, y = noisy
    write_image(tmp_path / "in.png", y, bit_depth=16)
    write_image(tmp_path / "mask.png", (np.random.default_rng(0).random(y.shape) < 0.6) * 1.0)
    code, _, stderr = run(command, "in.png", "-o", "out.tif", "--sigma", "0.05", "--weight",
                          "0.05", *extra, "--quiet", cwd=tmp_path)
    assert code == 0, stderr
    out, info = read_image(tmp_path / "out.tif")
    assert out.shape == shape and info.bit_depth == 16


def test_tiled_denoising_matches_whole_image(tmp_path, noisy):
    _, y = noisy
    write_image(tmp_path / "in.tif", y.astype(np.float32))
    common = ["--sigma", "0.05", "--weight", "0.05", "--quiet"]
    assert run("denoise", "in.tif", "-o", "whole.tif", *common, cwd=tmp_path)[0] == 0
    code, _, stderr = run("denoise", "in.tif", "-o", "tiled.tif", "--tile", "20", *common,
                          cwd=tmp_path)
    assert code == 0, stderr
    whole, tiled = (read_image(tmp_path / f)[0] for f in ("whole.tif", "tiled.tif"))
    assert np.abs(whole - tiled).max() < 5e-3  # both at the default tolerance
    code, _, stderr = run("deblur", "in.tif", "-o", "d.tif", "--psf", "gaussian:1.0",
                          "--tile", "20", *common, cwd=tmp_path)
    assert code == 2 and "operator" in stderr


def test_parameter_free_by_default(tmp_path, noisy):
    clean, y = noisy
    write_image(tmp_path / "in.png", y, bit_depth=16)
    code, stdout, stderr = run("denoise", "in.png", "-o", "out.png", cwd=tmp_path)
    assert code == 0, stderr
    assert "(estimated)" in stdout and "sigma" in stdout
    restored, _ = read_image(tmp_path / "out.png")
    assert np.abs(restored - clean).mean() < np.abs(y - clean).mean()


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch, noisy):
    _, y = noisy
    import png

    def broken_write(self, fh, rows):
        fh.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(png.Writer, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "out.png", y)
    assert list(tmp_path.iterdir()) == []


def test_demo_writes_three_files(tmp_path):
    pytest.importorskip("skimage")
    code, stdout, stderr = run("demo", "--out", "demo", cwd=tmp_path)
    assert code == 0, stderr
    for name in ("restored.png", "std.tiff", "figure.png"):
        assert (tmp_path / "demo" / name).stat().st_size > 0
        assert name in stdout
    restored, info = read_image(tmp_path / "demo" / "restored.png")
    assert restored.shape == (512, 512) and info.bit_depth == 8
