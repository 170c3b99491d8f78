"""Bad input, one test per row of the table in docs/reliability.md.

Every failing case must give a one-line error naming the file and the problem, a non-zero exit, no
traceback, and no partial output. Restores run both paths (--bundle: the runtime; --checkpoint: torch)
and continue past a bad file, reporting it at the end with exit status 1.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


from conftest import REPO, cli


def _photo(shape=(40, 56)) -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[: shape[0], : shape[1]])


@pytest.fixture()
def good(tmp_path) -> Path:
    path = tmp_path / "in" / "good.png"
    path.parent.mkdir(exist_ok=True)
    Image.fromarray(_photo()).save(path)
    return path


def _model_args(which: str, bundles, tiny_checkpoint) -> list[str]:
    return ["--bundle", str(bundles["onnx"])] if which == "bundle" else ["--checkpoint", str(tiny_checkpoint)]


def _clean_failure(status: int, err: str, *names: str) -> None:
    assert status not in (0, None), err
    assert "Traceback" not in err, err
    for name in names:
        assert name in err, err


def _no_litter(folder: Path) -> None:
    """No temporary or half-written file left behind."""
    if folder.exists():
        assert not [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]


def _restore_batch(which, bundles, tiny_checkpoint, bad: Path, good: Path, out: Path, *extra: str):
    """Restore [bad, good]: the good one must still be written, the bad one reported, exit 1."""
    status, stdout, err = cli("restore", bad, good, "-o", out, *_model_args(which, bundles, tiny_checkpoint), *extra)
    _clean_failure(status, err, str(bad), "1 of 2 inputs failed")
    assert status == 1
    assert sorted(p.name for p in out.iterdir()) == [good.name]
    _no_litter(out)
    return err


PATHS = pytest.mark.parametrize("which", ["bundle", "checkpoint"])


# --- image files -----------------------------------------------------------------------------------------

@PATHS
def test_missing_file(which, bundles, tiny_checkpoint, good, tmp_path):
    err = _restore_batch(which, bundles, tiny_checkpoint, tmp_path / "in" / "gone.png", good, tmp_path / "out")
    assert "no such file" in err


@PATHS
def test_zero_byte_file(which, bundles, tiny_checkpoint, good, tmp_path):
    bad = tmp_path / "in" / "empty.jpg"
    bad.write_bytes(b"")
    assert "empty (0 bytes)" in _restore_batch(which, bundles, tiny_checkpoint, bad, good, tmp_path / "out")


@PATHS
@pytest.mark.parametrize("kind", ["truncated.jpg", "truncated.png", "corrupt.png"])
def test_truncated_or_corrupt_file(which, kind, bundles, tiny_checkpoint, good, tmp_path):
    bad = tmp_path / "in" / kind
    Image.fromarray(_photo((96, 96))).save(bad)
    data = bytearray(bad.read_bytes())
    if kind.startswith("truncated"):
        data = data[: len(data) // 2]
    else:  # damage the compressed data, keep the header
        data[200:260] = bytes(60)
    bad.write_bytes(bytes(data))
    assert "corrupt" in _restore_batch(which, bundles, tiny_checkpoint, bad, good, tmp_path / "out")


@PATHS
def test_not_an_image_with_an_image_extension(which, bundles, tiny_checkpoint, good, tmp_path):
    bad = tmp_path / "in" / "notes.jpg"
    bad.write_text("meeting notes, not a photo")
    assert "not an image" in _restore_batch(which, bundles, tiny_checkpoint, bad, good, tmp_path / "out")


@PATHS
def test_a_run_where_every_input_fails_leaves_no_output_folder(which, bundles, tiny_checkpoint, tmp_path):
    bad = tmp_path / "in" / "notes.png"
    bad.parent.mkdir()
    bad.write_text("meeting notes, not a photo")
    status, _, err = cli("restore", bad, "-o", tmp_path / "out" / "restored",
                         *_model_args(which, bundles, tiny_checkpoint))
    _clean_failure(status, err, "not an image")
    assert status == 2 and not (tmp_path / "out").exists()


def test_two_inputs_with_one_name_are_named_and_nothing_runs(good, tmp_path):
    other = tmp_path / "elsewhere" / good.name
    other.parent.mkdir()
    other.write_bytes(good.read_bytes())
    status, _, err = cli("restore", good, other, "-o", tmp_path / "out")
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{good} and {other} share a file name" in err and "separate folders" in err
    assert not (tmp_path / "out").exists()
    # The same image twice (a folder and a file in it, or one path repeated): said so, not a crash.
    for args in ((good, good), (good.parent, good)):
        status, _, err = cli("restore", *args, "-o", tmp_path / "out")
        assert status == 2 and len(err.strip().splitlines()) == 1 and "is given twice" in err, err


def test_a_file_that_is_no_image_by_name_fails_alone(bundles, tiny_checkpoint, good, tmp_path):
    """A batch with a non-image file (readme.md) restores the rest and blames the input, not the output folder;
    a readable image under a name no image format has (.img) fails alone too, with what to do."""
    bad = tmp_path / "in" / "readme.md"
    bad.write_text("# notes")
    err = _restore_batch("bundle", bundles, tiny_checkpoint, bad, good, tmp_path / "out")
    assert "not an image" in err and "cannot write" not in err
    img = tmp_path / "in" / "scan.img"
    Image.fromarray(_photo((32, 32))).save(img, format="PNG")  # Pillow reads it by its content
    err = _restore_batch("bundle", bundles, tiny_checkpoint, img, good, tmp_path / "out2")
    assert "unknown image extension '.img'; use .png, .jpg or .webp" in err


@PATHS
def test_decompression_bomb(which, bundles, tiny_checkpoint, good, tmp_path, monkeypatch):
    bad = tmp_path / "in" / "bomb.png"
    Image.fromarray(np.zeros((200, 200, 3), np.uint8)).save(bad)
    # Pillow refuses images over twice MAX_IMAGE_PIXELS; lowered here so a small file stands for a bomb.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert "decompression bomb" in _restore_batch(which, bundles, tiny_checkpoint, bad, good, tmp_path / "out")


@PATHS
@pytest.mark.parametrize("shape", [(1, 1), (7, 13)])
def test_tiny_images(which, shape, bundles, tiny_checkpoint, tmp_path):
    src = tmp_path / "tiny.png"
    Image.fromarray(_photo(shape)).save(src)
    status, _, err = cli("restore", src, "-o", tmp_path / "out", *_model_args(which, bundles, tiny_checkpoint))
    assert status == 0, err
    with Image.open(tmp_path / "out" / "tiny.png") as im:
        assert im.size == (shape[1], shape[0])


def _png_rgb16(path: Path, rgb16: np.ndarray) -> None:
    """A 16-bit colour PNG (Pillow writes none): IHDR with bit depth 16 and colour type 2, unfiltered rows."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    h, w, _ = rgb16.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _mode_file(tmp_path: Path, mode: str) -> Path:
    rgb = _photo((24, 32))
    if mode == "16-bit-colour.png":
        _png_rgb16(tmp_path / mode, rgb.astype(np.uint16) * 257)
        return tmp_path / mode
    if mode == "16-bit.png":
        im = Image.fromarray((rgb[..., 0].astype(np.uint16) * 257))
    elif mode == "cmyk.jpg":
        im = Image.fromarray(rgb).convert("CMYK")
    elif mode == "palette.png":
        im = Image.fromarray(rgb).convert("P")
    elif mode == "rgba.png":
        im = Image.fromarray(np.dstack([rgb, np.full((24, 32), 128, np.uint8)]), "RGBA")
    elif mode == "gray.png":
        im = Image.fromarray(rgb).convert("L")
    else:  # animated.gif
        frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(255 - rgb).convert("P")]
        frames[0].save(tmp_path / mode, save_all=True, append_images=frames[1:])
        return tmp_path / mode
    im.save(tmp_path / mode)
    return tmp_path / mode


@PATHS
@pytest.mark.parametrize("mode", ["16-bit.png", "16-bit-colour.png", "cmyk.jpg", "palette.png", "rgba.png", "gray.png",
                                  "animated.gif"])
def test_image_modes(which, mode, bundles, tiny_checkpoint, tmp_path):
    src = _mode_file(tmp_path, mode)
    status, stdout, err = cli("restore", src, "-o", tmp_path / "out", "--json",
                              *_model_args(which, bundles, tiny_checkpoint))
    assert status == 0, err
    # 16-bit colour is restored, from 8 bits per channel (all Pillow decodes), and the user is told in one line.
    warned = [line for line in err.splitlines() if "warning:" in line]
    assert warned == ([f"rar-edge restore: warning: {src}: a 16-bit image with colour or alpha is read at 8 bits per "
                       "channel (Pillow decodes no more); its fine levels are lost before the model sees it"]
                      if mode == "16-bit-colour.png" else []), err
    out = tmp_path / "out" / src.name
    with Image.open(out) as im:
        assert im.size == (32, 24)
        assert im.mode == ("RGBA" if mode == "rgba.png" else "P" if mode == "animated.gif" else "RGB")
        if mode == "rgba.png":
            assert np.asarray(im)[..., 3].min() == 128  # alpha written back untouched
        if mode == "16-bit.png":  # full range read as 16-bit, not clipped to white
            assert 40 < np.asarray(im.convert("L")).mean() < 215


# --- outputs ---------------------------------------------------------------------------------------------

@PATHS
def test_unwritable_output(which, bundles, tiny_checkpoint, good, photo_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the output folder should go")
    status, _, err = cli("restore", good, "-o", blocker / "out", *_model_args(which, bundles, tiny_checkpoint))
    _clean_failure(status, err, str(blocker / "out"), "writable")
    assert status == 2 and blocker.read_text().startswith("a file")
    for args in (["profile", "--bundle", bundles["onnx"], "--runs", "1", "-o", blocker / "p.json"],
                 ["eval", "--checkpoint", tiny_checkpoint, "--data", photo_dir, "--crop", "32", "--max-images", "1",
                  "--json", blocker / "r.json"]):
        status, _, err = cli(*args)
        _clean_failure(status, err, str(blocker / args[-1].name))


@PATHS
def test_output_path_equal_to_the_input(which, bundles, tiny_checkpoint, good):
    before = good.read_bytes()
    status, _, err = cli("restore", good, "-o", good.parent, *_model_args(which, bundles, tiny_checkpoint))
    _clean_failure(status, err, "is the input itself", "--overwrite")
    assert status == 2 and good.read_bytes() == before
    status, _, err = cli("restore", good, "-o", good.parent, "--overwrite", *_model_args(which, bundles, tiny_checkpoint))
    assert status == 0, err
    assert good.read_bytes() != before


# --- bundles ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["tampered", "truncated"])
def test_damaged_bundle_artifact(damage, bundles, good, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["onnx"], bundle)
    art = bundle / "restore.onnx"
    data = art.read_bytes()
    art.write_bytes(data[: len(data) // 2] if damage == "truncated" else data[:100] + b"\x00" + data[101:])
    for args in (["restore", good, "-o", tmp_path / "out", "--bundle", bundle],
                 ["profile", "--bundle", bundle, "-o", tmp_path / "p.json"]):
        status, _, err = cli(*args)
        _clean_failure(status, err, "restore.onnx", "SHA-256", "re-export")
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.json").exists()


def test_newer_manifest_schema(bundles, good, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles["onnx"], bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 2}))
    status, _, err = cli("restore", good, "-o", tmp_path / "out", "--bundle", bundle)
    _clean_failure(status, err, "schema 2", "upgrade rar_edge")


def test_missing_backend(bundles, good, tmp_path):
    for backend, message in (("tpu", "unknown backend 'tpu'"), ("executorch", "runs executorch bundles"),
                             ("coreml", "runs coreml bundles")):
        status, _, err = cli("restore", good, "-o", tmp_path / "out", "--bundle", bundles["onnx"], "--backend", backend)
        _clean_failure(status, err, message)
    assert not (tmp_path / "out").exists()


# --- checkpoints and data folders ------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["corrupt", "mismatched"])
def test_corrupt_or_mismatched_checkpoint(damage, tiny_checkpoint, good, photo_dir, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint, ckpt)
    if damage == "corrupt":
        (ckpt / "model.safetensors").write_bytes((ckpt / "model.safetensors").read_bytes()[:300])
    else:  # rar-tiny weights under the shipped rar-edge-s config
        shutil.copy(REPO / "rar_edge" / "weights" / "rar-edge-s" / "config.json", ckpt / "config.json")
    out = tmp_path / "out"
    for args in (["restore", good, "-o", out, "--checkpoint", ckpt],
                 ["eval", "--checkpoint", ckpt, "--data", photo_dir],
                 ["export", "--target", "onnx", "--checkpoint", ckpt, "-o", out],
                 ["distill", "--teacher", ckpt, "--data", photo_dir, "--out", out, "--preset", "rar-tiny"],
                 ["train", "--preset", "rar-tiny", "--init", ckpt, "--data", photo_dir, "--out", out]):
        status, _, err = cli(*args)
        _clean_failure(status, err, str(ckpt))
        assert status == 2 and re.search("damaged|does not match|not", err), err
    assert not out.exists()


def test_empty_or_unreadable_data_folder(tiny_checkpoint, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    (data / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    for args in (["train", "--preset", "rar-tiny", "--data", data, "--out", out],
                 ["distill", "--teacher", tiny_checkpoint, "--data", data, "--out", out, "--preset", "rar-tiny"],
                 ["eval", "--checkpoint", tiny_checkpoint, "--data", data],
                 ["export", "--target", "onnx", "--checkpoint", tiny_checkpoint, "--precision", "int8",
                  "--calib", data, "-o", out]):
        status, _, err = cli(*args)
        _clean_failure(status, err, str(data), "no usable image")
    assert not out.exists()


def test_every_row_of_the_table_has_its_test():
    table = (REPO / "docs" / "reliability.md").read_text()
    named = re.findall(r"`(test_\w+)`", table)
    sources = "".join(p.read_text() for p in (REPO / "tests").glob("test_*.py"))
    assert len(named) >= 20
    missing = [n for n in named if f"def {n}(" not in sources]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_out_of_memory_on_one_image_does_not_end_the_batch(tmp_path):
    from rar_edge.runtime.files import restore_files

    paths = []
    for name, shape in (("huge.png", (30, 40)), ("small.png", (20, 20))):
        Image.fromarray(_photo(shape)).save(tmp_path / name)
        paths.append(str(tmp_path / name))

    def restore(rgb):
        if rgb.shape[0] == 30:  # stands for an image too large for this device's memory
            raise MemoryError
        return rgb, {"steps": 0}

    records = list(restore_files(restore, paths, tmp_path / "out"))
    assert "out of memory" in records[0]["error"] and records[1]["output"].endswith("small.png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.png"]


def test_missing_bundle(good, tmp_path):
    for args in (["restore", good, "-o", tmp_path / "out", "--bundle", tmp_path / "nope"],
                 ["profile", "--bundle", tmp_path / "nope", "-o", tmp_path / "p.json"]):
        status, _, err = cli(*args)
        _clean_failure(status, err, str(tmp_path / "nope"), "does not exist; pass a bundle folder")
        assert status == 2
    assert not (tmp_path / "out").exists() and not (tmp_path / "p.json").exists()


def test_folder_input_restores_its_images(bundles, good, tmp_path):
    (good.parent / "notes.txt").write_text("not an image")
    Image.fromarray(_photo((24, 32))).save(good.parent / "second.jpg")
    status, stdout, err = cli("restore", good.parent, "-o", tmp_path / "out", "--bundle", bundles["onnx"], "--json")
    assert status == 0, err
    assert sorted(json.loads(line)["input"] for line in stdout.splitlines()) == sorted(
        [str(good), str(good.parent / "second.jpg")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good.png", "second.jpg"]
    (tmp_path / "empty").mkdir()
    status, _, err = cli("restore", tmp_path / "empty", "-o", tmp_path / "out2", "--bundle", bundles["onnx"])
    _clean_failure(status, err, "holds no image files")
    assert status == 2 and "not searched inside" not in err
    (tmp_path / "empty" / "train").mkdir()  # rar-edge photos' layout: images in subfolders, which are not searched
    status, _, err = cli("restore", tmp_path / "empty", "-o", tmp_path / "out2", "--bundle", bundles["onnx"])
    assert status == 2 and f"folders are not searched inside: pass {tmp_path / 'empty' / 'train'})" in err, err


@pytest.mark.parametrize("budget", ["0", "-5", "inf"])
def test_bad_budget_is_refused_before_loading_anything(good, tmp_path, budget):
    # The bundle does not exist: the error must be about the budget, found before any loading.
    status, _, err = cli("restore", good, "-o", tmp_path / "out", "--bundle", tmp_path / "nope", "--budget-ms", budget)
    _clean_failure(status, err, "--budget-ms must be a positive number")
    assert status == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_unwritable_output_is_found_before_the_model_loads(good, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    status, _, err = cli("restore", good, "-o", blocker / "out", "--bundle", tmp_path / "nope")
    _clean_failure(status, err, "cannot write", "writable")
    assert status == 2 and "not a bundle" not in err
