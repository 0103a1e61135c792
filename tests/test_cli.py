"""The command line, as a user runs it: files in, files out, one-line errors with exit code 2."""

import contextlib
import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from bayes_restore import cli
from bayes_restore.io import atomic_paths, read_image, write_image

pytest.importorskip("png")
tifffile = pytest.importorskip("tifffile")

# one thread per process: the test machines are shared, and OpenMP threads spinning on a
# busy machine make small torch operations several times slower
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(*args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "bayes_restore", *args], cwd=cwd, capture_output=True, text=True,
        timeout=300, env=ENV,
    )
    return proc.returncode, proc.stdout, proc.stderr


def run_here(*args):
    """``cli.main`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


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
         "--scale and --weight"),
        ("ok", ["in.png", "--tile", "0"], "--tile"),
        ("ok", ["in.png", "--tile", "16", "--overlap", "-3"], "--overlap"),
        ("ok", ["in.png", "--overlap", "8"], "--overlap needs --tile"),
        ("ok", ["in.png", "--point", "mean"], "--point mean"),
        ("ok", ["in.png", "--method", "mcmc", "--point", "map"], "--point map"),
        ("ok", ["in.png", "--point", "median"], "--point"),
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
        ("deblur", ["--psf", "gaussian:1.0", "--boundary", "reflect"], (48, 48)),
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


# ------------------------------------------------------------------ write_image: any layout


def _layouts(a):
    """The same values as ``a`` (float64, C order) in other layouts, dtypes and byte orders."""
    wide = np.zeros(a.shape[:1] + (2 * a.shape[1],) + a.shape[2:])
    wide[:, ::2] = a
    return {
        "fortran": np.asfortranarray(a),
        "strided view": wide[:, ::2],
        "transposed view": np.ascontiguousarray(np.swapaxes(a, 0, 1)).swapaxes(0, 1),
        "reversed view": np.ascontiguousarray(a[::-1])[::-1],
        "big-endian": a.astype(">f8"),
        "big-endian fortran": np.asfortranarray(a.astype(">f4")),
        "float32": a.astype(np.float32),
        "float16": a.astype(np.float16),
    }


@pytest.mark.parametrize("name,depth", [("a.png", 8), ("a.png", 16), ("a.tif", 8),
                                        ("a.tif", 16), ("a.tif", 32)])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_write_image_accepts_any_memory_layout(tmp_path, name, depth, channels):
    rng = np.random.default_rng(1)
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    a = rng.random(shape).astype(np.float16).astype(np.float64)  # exact in float16 too
    reference = tmp_path / ("ref" + name)
    write_image(reference, a, bit_depth=depth)
    expected, _ = read_image(reference)
    for label, b in _layouts(a).items():
        path = tmp_path / f"{label.replace(' ', '_')}{name}"
        write_image(path, b, bit_depth=depth)
        back, info = read_image(path)
        np.testing.assert_array_equal(back, expected, err_msg=label)
        assert back.shape == shape and info.bit_depth == depth
    assert hidden(tmp_path) == []


def test_write_image_of_a_dct_result(tmp_path, noisy, monkeypatch):
    """The Gaussian prior's DCT path returns Fortran-ordered arrays (once a PNG crash)."""
    from bayes_restore import restore

    _, y = noisy
    post = restore(y, "gaussian", sigma=0.05, scale=0.1, method="exact")
    for name in ("m.png", "m.tif"):
        write_image(tmp_path / name, post.mean)
        assert read_image(tmp_path / name)[0].shape == y.shape
    write_image(tmp_path / "in.png", y)  # 8-bit grey input, --prior gaussian, PNG out
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_here("denoise", "in.png", "-o", "out.png", "--prior", "gaussian",
                               "--quiet")
    assert code == 0, stderr
    assert read_image(tmp_path / "out.png")[1].bit_depth == 8


@pytest.mark.parametrize("bad,error", [(np.ones((4, 4), complex), "real"),
                                       (np.array([["a"]]), "real"),
                                       (np.ones((4, 4, 5)), "shape"),
                                       (np.ones((0, 4)), "empty"),
                                       (np.full((4, 4), np.inf), "NaN")])
def test_write_image_refuses_bad_arrays(tmp_path, bad, error):
    with pytest.raises(ValueError, match=error):
        write_image(tmp_path / "x.tif", bad)
    assert list(tmp_path.iterdir()) == []


def test_grey_alpha_tiff_is_one_page(tmp_path):
    a = np.random.default_rng(0).random((6, 5, 2))
    write_image(tmp_path / "ga.tif", a, bit_depth=16)
    with tifffile.TiffFile(tmp_path / "ga.tif") as tif:
        assert len(tif.pages) == 1
    back, info = read_image(tmp_path / "ga.tif")
    assert back.shape == (6, 5, 2) and info.channels == 2


# ------------------------------------------------------------------ multi-page TIFF


@pytest.fixture
def pages(tmp_path):
    rng = np.random.default_rng(2)
    stack = rng.random((3, 16, 16)).astype(np.float32)
    tifffile.imwrite(tmp_path / "pages.tif", stack, photometric="minisblack")  # one series
    with tifffile.TiffWriter(tmp_path / "series.tif") as tw:  # three series of one page
        for page in stack:
            tw.write(page)
    tifffile.imwrite(tmp_path / "planar.tif", stack, photometric="rgb", planarconfig="separate")
    return tmp_path, stack


def test_read_multipage_tiff(pages):
    folder, stack = pages
    for name in ("pages.tif", "series.tif"):
        with pytest.raises(ValueError, match="3 pages.*--page"):
            read_image(folder / name)
        for k in range(3):
            img, info = read_image(folder / name, page=k)
            np.testing.assert_array_equal(img, stack[k])
            assert info.channels == 1
        with pytest.raises(ValueError, match="page 3 does not exist"):
            read_image(folder / name, page=3)
    rgb, info = read_image(folder / "planar.tif")  # one page, planar RGB: that is RGB
    assert rgb.shape == (16, 16, 3) and info.channels == 3
    np.testing.assert_array_equal(rgb, np.moveaxis(stack, 0, -1))
    assert read_image(folder / "planar.tif", page=0)[0].shape == (16, 16, 3)
    write_image(folder / "one.png", stack[0], bit_depth=16)
    assert read_image(folder / "one.png", page=0)[0].shape == (16, 16)
    with pytest.raises(ValueError, match="single-page"):
        read_image(folder / "one.png", page=1)
    with pytest.raises(ValueError, match=">= 0"):
        read_image(folder / "pages.tif", page=-1)
    with pytest.raises(TypeError, match="integer"):
        read_image(folder / "pages.tif", page="1")


def test_cli_page_option(pages, monkeypatch):
    folder, stack = pages
    monkeypatch.chdir(folder)
    code, _, stderr = run_here("denoise", "pages.tif", "-o", "out.tif", "--quiet")
    assert code == 2 and "--page" in stderr
    code, _, stderr = run_here("denoise", "pages.tif", "--page", "2", "-o", "out.tif",
                               "--prior", "gaussian", "--sigma", "0.05", "--scale", "0.5",
                               "--quiet")
    assert code == 0, stderr
    out, info = read_image(folder / "out.tif")
    assert out.shape == (16, 16) and info.bit_depth == 32
    err = [np.abs(out - page).mean() for page in stack]
    assert np.argmin(err) == 2


def test_read_errors_are_clear(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        read_image(tmp_path / "d.png")
    with pytest.raises(ValueError, match="no such file"):
        read_image(tmp_path / "nope.png")


# ------------------------------------------------------------------ std maps, warnings, help


def test_vi_writes_the_tv_map_by_default_and_the_mean_when_asked(tmp_path, noisy, monkeypatch):
    from bayes_restore.restore import restore

    _, y = noisy
    write_image(tmp_path / "in.tif", y.astype(np.float32))
    monkeypatch.chdir(tmp_path)
    common = ["--method", "vi", "--sigma", "0.05", "--weight", "0.05", "--quiet"]
    for out, extra in (("auto.tif", []), ("map.tif", ["--point", "map"]),
                       ("mean.tif", ["--point", "mean"])):
        code, _, stderr = run_here("denoise", "in.tif", "-o", out, *common, *extra)
        assert code == 0, stderr
    post = restore(read_image(tmp_path / "in.tif")[0], "tv", method="vi", sigma=0.05,
                   weight=0.05, seed=0)
    written = {name: read_image(tmp_path / f"{name}.tif")[0] for name in ("auto", "map", "mean")}
    np.testing.assert_allclose(written["auto"], post.map, atol=1e-6)
    np.testing.assert_allclose(written["map"], post.map, atol=1e-6)
    np.testing.assert_allclose(written["mean"], post.mean, atol=1e-6)
    assert np.abs(post.map - post.mean).max() > 1e-3  # two different images


def test_std_and_interval_maps_are_float_tiffs(tmp_path, noisy, monkeypatch):
    _, y = noisy
    write_image(tmp_path / "in8.png", y)  # 8-bit input
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_here("denoise", "in8.png", "-o", "m.tif", "--prior", "gaussian",
                               "--method", "exact", "--sigma", "0.05", "--scale", "0.05",
                               "--std", "s.tif", "--interval", "lo.tif", "hi.tiff", "--quiet")
    assert code == 0, stderr
    assert read_image(tmp_path / "m.tif")[1].bit_depth == 8  # the image keeps its depth
    for name in ("s.tif", "lo.tif", "hi.tiff"):
        data, info = read_image(tmp_path / name)
        assert info.is_float and info.bit_depth == 32, name
    std = read_image(tmp_path / "s.tif")[0]
    assert np.abs(std * 255 - np.round(std * 255)).max() > 0.1  # not on the 8-bit grid
    code, _, stderr = run_here("denoise", "in8.png", "-o", "m2.png", "--prior", "gaussian",
                               "--method", "exact", "--std", "s.png", "--quiet")
    assert code == 2 and "--std" in stderr and "TIFF" in stderr


def test_warnings_are_summarised_in_one_line(tmp_path, noisy, monkeypatch):
    restore_module = sys.modules["bayes_restore.restore"]
    from bayes_restore.exceptions import ConvergenceWarning

    real = restore_module.restore

    def noisy_restore(*args, **kwargs):
        for k in range(8):
            warnings.warn(f"solver stopped at step {k}", ConvergenceWarning, stacklevel=2)
        warnings.warn("old", DeprecationWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(restore_module, "restore", noisy_restore)
    _, y = noisy
    write_image(tmp_path / "in.png", y)
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_here("denoise", "in.png", "-o", "out.png", "--sigma", "0.05",
                               "--weight", "0.05", "--quiet")
    assert code == 0, stderr
    assert stderr.splitlines() == [
        "warning: 8 ConvergenceWarning(s): solver stopped at step 0"
    ]


def test_every_option_and_subcommand_is_documented():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == {"demo", "denoise", "deblur", "superres", "inpaint"}
    for name, p in sub.choices.items():
        assert p.description, name
        for action in p._actions:
            assert action.help and action.help.strip(), (name, action.option_strings)
        code, out, _ = run_here(name, "--help")
        assert code == 0 and "--seed" in out
    for action in sub._choices_actions:
        assert action.help


# ------------------------------------------------------------------ seeds and exit codes


@pytest.fixture
def spy(monkeypatch):
    """Replace restore / restore_tiled by a recorder returning a plausible posterior."""
    restore_module = sys.modules["bayes_restore.restore"]
    from bayes_restore import tiled

    calls = []
    real = restore_module.restore

    def record(image, prior, **kwargs):
        calls.append(kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("tile", "overlap")}
        return real(image, prior, **kwargs)

    monkeypatch.setattr(restore_module, "restore", record)
    monkeypatch.setattr(tiled, "restore_tiled", record)
    return calls


def test_seed_is_passed_to_restore(tmp_path, noisy, monkeypatch, spy):
    _, y = noisy
    write_image(tmp_path / "in.png", y)
    monkeypatch.chdir(tmp_path)
    common = ["--sigma", "0.05", "--weight", "0.05", "--quiet", "--force"]
    assert run_here("denoise", "in.png", "-o", "a.png", *common)[0] == 0
    assert run_here("denoise", "in.png", "-o", "a.png", "--seed", "7", *common)[0] == 0
    assert run_here("denoise", "in.png", "-o", "a.png", "--seed", "8", "--tile", "24",
                    *common)[0] == 0
    assert [c["seed"] for c in spy] == [0, 7, 8]
    assert spy[2]["tile"] == 24


def test_demo_seed_is_passed(monkeypatch, tmp_path):
    seen = {}

    def fake_demo(out, *, sigma, seed):
        seen.update(out=out, sigma=sigma, seed=seed)
        return {"paths": {}, "psnr": {"noisy": 1, "tv_map": 2, "tv_mean": 3}, "weight": 0.1,
                "sampler": "x"}

    from bayes_restore.cli import camera_demo  # the demo command calls its module's demo

    monkeypatch.setattr(camera_demo, "demo", fake_demo)
    monkeypatch.chdir(tmp_path)
    assert run_here("demo", "--seed", "5", "--out", "d")[0] == 0
    assert seen["seed"] == 5


@pytest.mark.parametrize("error", [ValueError("internal"), TypeError("internal"),
                                   RuntimeError("internal"), OSError("internal")])
def test_internal_errors_are_not_user_errors(tmp_path, noisy, monkeypatch, error):
    """Only the command's input is a user error: a failure inside the library is a bug
    and must show its traceback (exit code 1), whatever its type."""
    restore_module = sys.modules["bayes_restore.restore"]

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(restore_module, "restore", broken)
    _, y = noisy
    write_image(tmp_path / "in.png", y)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(type(error), match="internal"):
        cli.main(["denoise", "in.png", "-o", "out.png", "--sigma", "0.05", "--weight", "0.05"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png"]


def test_failed_write_leaves_nothing_and_keeps_old_outputs(tmp_path, noisy, monkeypatch):
    from bayes_restore import io as bio

    _, y = noisy
    write_image(tmp_path / "in.png", y)
    (tmp_path / "lo.tif").write_bytes(b"old lo")
    real = bio.encode_image
    count = []

    def fail_third(path, data, depth):
        count.append(path)
        if len(count) == 3:
            raise OSError(28, "No space left on device")
        real(path, data, depth)

    monkeypatch.setattr(bio, "encode_image", fail_third)
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run_here("denoise", "in.png", "-o", "m.tif", "--prior", "gaussian",
                               "--method", "exact", "--sigma", "0.05", "--scale", "0.05",
                               "--std", "s.tif", "--interval", "lo.tif", "hi.tif",
                               "--force", "--quiet")
    assert code == 2 and len(stderr.splitlines()) == 1
    assert "No space left" in stderr and "--interval 'lo.tif'" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "lo.tif"]
    assert (tmp_path / "lo.tif").read_bytes() == b"old lo"


def test_atomic_paths_rolls_back_a_failed_rename(tmp_path, monkeypatch):
    (tmp_path / "b.txt").write_text("old b")
    real = os.replace
    renames = []

    def flaky(src, dst):
        renames.append(dst)
        if len(renames) == 3:
            raise OSError(5, "I/O error")
        real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    with pytest.raises(OSError, match="I/O"):
        with atomic_paths([tmp_path / n for n in ("a.txt", "b.txt", "c.txt")]) as temps:
            for t, text in zip(temps, "abc", strict=True):
                t.write_text(text)
    monkeypatch.setattr(os, "replace", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]
    assert (tmp_path / "b.txt").read_text() == "old b"


def test_fresh_processes_write_identical_files(tmp_path, noisy, monkeypatch):
    """Same seed, same bytes (MCMC and the default MAP); another seed, other draws."""
    _, y = noisy
    y = y[:32, :32]
    write_image(tmp_path / "in.png", y, bit_depth=16)
    mcmc = ["--method", "mcmc", "--num-samples", "20", "--sigma", "0.05", "--weight", "0.05",
            "--quiet"]
    for tag in ("a", "b"):
        code, _, stderr = run("denoise", "in.png", "-o", f"m{tag}.tif", "--std", f"s{tag}.tif",
                              "--seed", "3", *mcmc, cwd=tmp_path)
        assert code == 0, stderr
        code, _, stderr = run("denoise", "in.png", "-o", f"map{tag}.png", "--quiet",
                              cwd=tmp_path)
        assert code == 0, stderr
    monkeypatch.chdir(tmp_path)
    for seed in ("3", "4"):
        code, _, stderr = run_here("denoise", "in.png", "-o", f"m{seed}.tif", "--std",
                                   f"s{seed}.tif", "--seed", seed, *mcmc)
        assert code == 0, stderr
    read = lambda name: (tmp_path / name).read_bytes()  # noqa: E731
    assert read("ma.tif") == read("mb.tif") and read("sa.tif") == read("sb.tif")
    assert read("mapa.png") == read("mapb.png")
    assert read("s3.tif") != read("s4.tif")
