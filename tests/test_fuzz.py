"""Property-based fuzzing of the three parsers that read untrusted files: images, bundle manifests,
device profiles. Each must return a valid result or raise its one-line error type; nothing else.

``make test`` runs a fixed (derandomized) set of examples in about a minute; RAR_EDGE_FUZZ=deep runs
twenty times more, freshly random each time. Every crash found becomes a regular test below.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rar_edge.errors import RarEdgeError
from rar_edge.manifest import MANIFEST, build_manifest, sha256, verify_bundle
from rar_edge.runtime.images import load_image
from rar_edge.runtime.profile import parse_profile
from rar_edge.runtime.restorer import Restorer

DEEP = os.environ.get("RAR_EDGE_FUZZ") == "deep"
settings.register_profile("fixed", derandomize=True, deadline=None, max_examples=1500, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("deep", deadline=None, max_examples=30000, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings.get_profile("deep" if DEEP else "fixed")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12)


# --- images ---------------------------------------------------------------------------------------------

def _seed_images() -> dict[str, bytes]:
    """Small valid files of the formats and modes users send, as starting points for mutation."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    seeds = {}
    for name, im, fmt, kw in [
        ("rgb.png", Image.fromarray(rgb), "PNG", {}),
        ("rgba.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"), "PNG", {}),
        ("g16.png", Image.fromarray((rng.integers(0, 65535, (9, 13))).astype(np.uint16)), "PNG", {}),
        ("pal.png", Image.fromarray(rgb).convert("P"), "PNG", {}),
        ("rgb.jpg", Image.fromarray(rgb), "JPEG", {"quality": 80}),
        ("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"), "JPEG", {}),
        ("anim.gif", Image.fromarray(rgb).convert("P"), "GIF",
         {"save_all": True, "append_images": [Image.fromarray(rgb[::-1].copy()).convert("P")]}),
        ("rgb.webp", Image.fromarray(rgb), "WEBP", {}),
        ("rgb.tif", Image.fromarray(rgb), "TIFF", {}),
    ]:
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        seeds[name] = buf.getvalue()
    return seeds


SEEDS = _seed_images()


@st.composite
def mutated_image(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return name, bytes(data)


def _check_loaded(path: Path) -> None:
    try:
        loaded = load_image(path)
    except RarEdgeError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    h, w, c = loaded.rgb.shape
    assert c == 3 and h > 0 and w > 0 and loaded.rgb.dtype in (np.uint8, np.float32)  # 8-bit modes stay uint8
    if loaded.rgb.dtype == np.float32:
        assert np.isfinite(loaded.rgb).all() and loaded.rgb.min() >= 0 and loaded.rgb.max() <= 1
    assert loaded.alpha is None or loaded.alpha.shape == (h, w)


@FUZZ
@given(mutated_image())
def test_fuzz_image_loader_mutated_files(sample):
    name, data = sample
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        _check_loaded(path)


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([".png", ".jpg", ".gif", ".webp", ".tif", ".bmp"]))
def test_fuzz_image_loader_random_bytes(data, ext):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"x{ext}"
        path.write_bytes(data)
        _check_loaded(path)


# --- bundle manifests -----------------------------------------------------------------------------------

def _valid_manifest() -> dict:
    from rar_edge.model.presets import get_preset

    m = build_manifest(get_preset("rar-tiny").config, "rar-tiny", "fp32", "onnx", (64, 64), False, "test")
    m["artifacts"] = {"rar.onnx": sha256_of(b"model")}
    return m


def sha256_of(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


VALID_MANIFEST = _valid_manifest()


@st.composite
def mutated_manifest(draw):
    m = json.loads(json.dumps(VALID_MANIFEST))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(m)))
        if isinstance(m[key], dict) and m[key] and draw(st.booleans()):
            sub = draw(st.sampled_from(sorted(m[key])))
            m[key][sub] = draw(JSON)
        elif draw(st.booleans()):
            m[key] = draw(JSON)
        else:
            del m[key]
    return m


def _check_bundle(text: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        bundle = Path(d)
        (bundle / "rar.onnx").write_bytes(b"model")
        (bundle / MANIFEST).write_text(text)
        try:
            manifest = verify_bundle(bundle)
        except ValueError as e:
            assert "\n" not in str(e)
            return
        try:  # what the runtime reads from a manifest that passed
            Restorer(bundle, manifest, backend=None)
        except RarEdgeError:
            pass


@FUZZ
@given(mutated_manifest())
def test_fuzz_manifest_mutations(manifest):
    _check_bundle(json.dumps(manifest))


@FUZZ
@given(JSON | st.text(max_size=200))
def test_fuzz_manifest_arbitrary_json_and_text(value):
    _check_bundle(value if isinstance(value, str) else json.dumps(value))


def test_valid_manifest_seed_passes(tmp_path):
    (tmp_path / "rar.onnx").write_bytes(b"model")
    (tmp_path / MANIFEST).write_text(json.dumps(VALID_MANIFEST))
    assert verify_bundle(tmp_path)["artifacts"] == {"rar.onnx": sha256(tmp_path / "rar.onnx")}


# --- device profiles ------------------------------------------------------------------------------------

VALID_PROFILE = {"format": "rar_edge.device_profile", "format_version": 1, "device": "test", "backend": "onnx",
                 "method": "measured",
                 "sizes": {"64x64": {e: {"median_ms": 1.0, "p90_ms": 1.5} for e in ("encode", "assess", "restore", "decode")}}}


@st.composite
def mutated_profile(draw):
    p = json.loads(json.dumps(VALID_PROFILE))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "size", "entry"]))
        if where == "top":
            key = draw(st.sampled_from(sorted(p) + ["extra"]))
            if draw(st.booleans()):
                p[key] = draw(JSON)
            else:
                p.pop(key, None)
        elif where == "size" and isinstance(p.get("sizes"), dict):
            p["sizes"][draw(st.text(max_size=8))] = draw(JSON)
        elif isinstance(p.get("sizes"), dict) and isinstance(p["sizes"].get("64x64"), dict):
            entry = p["sizes"]["64x64"]
            entry[draw(st.sampled_from(["encode", "assess", "restore", "decode"]))] = draw(JSON)
    return p


def _check_profile(value) -> None:
    try:
        profile = parse_profile(value, "p.json")
    except RarEdgeError as e:
        assert "\n" not in str(e)
        return
    costs = profile.entry_ms((512, 512))  # what the scheduler asks of a profile that passed
    assert all(np.isfinite(v) and v >= 0 for v in costs.values())


@FUZZ
@given(mutated_profile())
def test_fuzz_profile_mutations(value):
    _check_profile(value)


@FUZZ
@given(JSON)
def test_fuzz_profile_arbitrary_json(value):
    _check_profile(value)


def test_valid_profile_seed_passes():
    assert parse_profile(VALID_PROFILE).entry_ms((128, 128))["restore"] == pytest.approx(6.0)


# --- crashes fuzzing found, kept as regular tests -----------------------------------------------------------

def test_profile_version_with_a_newline_gives_a_one_line_error():
    bad = {**VALID_PROFILE, "format_version": "\n"}  # CI's fuzz find: the value was printed raw
    with pytest.raises(RarEdgeError, match=r"format version '\\n' is not 1") as e:
        parse_profile(bad, "p.json")
    assert "\n" not in str(e.value)


def test_artifact_name_with_a_newline_gives_a_one_line_error(tmp_path):
    """An artifact named with a newline (valid JSON, a legal relative name) is quoted in the error."""
    manifest = json.loads(json.dumps(VALID_MANIFEST))
    manifest["artifacts"] = {"a\nb.onnx": "0" * 64}
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"artifact 'a\\nb.onnx' is missing") as e:
        verify_bundle(tmp_path)
    assert "\n" not in str(e.value)


def test_animated_gif_with_a_damaged_later_frame_gives_its_first_frame():
    path = Path(__file__).parent / "data" / "anim_truncated.gif"  # the fuzzer's find, saved as found
    with Image.open(path) as im:
        im.load()  # the first frame decodes...
        first = np.asarray(im.convert("RGB"))
        with pytest.raises(IndexError):
            im.n_frames  # ...but Pillow's frame count raises IndexError (what load_image crashed on)
    loaded = load_image(path)
    np.testing.assert_array_equal(loaded.rgb, first)
    assert loaded.info["frames"] is None  # unknown: a later frame is damaged


def test_manifest_without_input_shape_is_refused(tmp_path):
    manifest = dict(VALID_MANIFEST)
    del manifest["input_shape"]  # Restorer raised KeyError on this
    (tmp_path / "rar.onnx").write_bytes(b"model")
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="input_shape"):
        verify_bundle(tmp_path)


def test_manifest_before_min_change_and_keep_runs_the_old_rule(tmp_path):
    manifest = json.loads(json.dumps(VALID_MANIFEST))
    defaults = manifest["quality"]["defaults"]
    defaults.pop("min_change", None)
    defaults.pop("keep", None)
    (tmp_path / "rar.onnx").write_bytes(b"model")
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    rule = Restorer(tmp_path, verify_bundle(tmp_path), backend=None).rule
    assert (rule.min_change, rule.keep) == (0.0, "best")  # bundles exported before the fields: as they ran
    for field, value in (("keep", "first"), ("min_change", -1)):
        (tmp_path / MANIFEST).write_text(json.dumps({**manifest, "quality": {
            **manifest["quality"], "defaults": {**defaults, field: value}}}))
        with pytest.raises(ValueError, match=f"quality.defaults.{field}"):
            verify_bundle(tmp_path)


def test_newer_manifest_schema_asks_for_an_upgrade(tmp_path):
    (tmp_path / "rar.onnx").write_bytes(b"model")
    (tmp_path / MANIFEST).write_text(json.dumps({**VALID_MANIFEST, "schema_version": 99}))
    with pytest.raises(ValueError, match="upgrade rar_edge"):
        verify_bundle(tmp_path)


@pytest.mark.parametrize("key", ["device", "backend"])
def test_profile_without_device_or_backend_is_refused(key):
    value = {k: v for k, v in VALID_PROFILE.items() if k != key}  # DeviceProfile() raised TypeError on this
    with pytest.raises(RarEdgeError, match=key):
        parse_profile(value)


def test_profile_size_with_non_ascii_digits_is_refused():
    value = {**VALID_PROFILE, "sizes": {"6²x64": VALID_PROFILE["sizes"]["64x64"]}}  # int("6²") raised ValueError
    with pytest.raises(RarEdgeError, match="HxW"):
        parse_profile(value)
