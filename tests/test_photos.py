"""The offline photo folder: Qt resource files (GCompris), per-image licences, the held-out split."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rar_edge.data import debian_photos
from rar_edge.data.debian_photos import GCOMPRIS_DIR, GCOMPRIS_RCC, gcompris, parse_gcompris_readme
from rar_edge.data.photos import build_photo_folder, choose_heldout
from rar_edge.data.qt_rcc import read_rcc
from rar_edge.errors import RarEdgeError


def write_rcc(path: Path, files: dict[str, bytes], compress: set[str] = frozenset(), version: int = 3) -> None:
    """A Qt resource file holding ``files`` ({"a/b.webp": bytes}), laid out as Qt's rcc writes it:
    breadth-first tree, children of a directory contiguous, qCompress payloads where asked."""
    tree: dict = {}
    for key in files:
        node = tree
        parts = key.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = key
    names, data = bytearray(), bytearray()
    name_at: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in name_at:
            name_at[name] = len(names)
            names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))
        return name_at[name]

    nodes: list[tuple] = [("", tree)]  # breadth-first: (name, subtree or file key)
    records: list[bytes] = []
    i = 0
    while i < len(nodes):
        name, item = nodes[i]
        if isinstance(item, dict):
            first = len(nodes)
            nodes.extend(sorted(item.items()))
            rec = struct.pack(">IHII", name_offset(name) if i else 0, 2, len(item), first)
        else:
            payload = files[item]
            flags = 0
            if item in compress:
                payload = struct.pack(">I", len(payload)) + zlib.compress(payload)
                flags = 1
            offset = len(data)
            data.extend(struct.pack(">I", len(payload)) + payload)
            rec = struct.pack(">IHHHI", name_offset(name), flags, 0, 0, offset)
        records.append(rec + (b"\0" * 8 if version >= 2 else b""))
        i += 1
    header_size = 20 if version < 3 else 24
    data_off = header_size
    names_off = data_off + len(data)
    tree_off = names_off + len(names)
    header = b"qres" + struct.pack(">IIII", version, tree_off, data_off, names_off)
    if version >= 3:
        header += struct.pack(">I", 0)
    path.write_bytes(header + bytes(data) + bytes(names) + b"".join(records))


def _webp(size: tuple[int, int], colour: int) -> bytes:
    rng = np.random.default_rng(colour)
    arr = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="WEBP", quality=90)
    return buf.getvalue()


README = """Copyright: Someone, 2020
License: CC-BY-SA 4.0
Files:
map.svg

Copyright: Alice
License: CC0-1.0
Source: https://example.org/a.jpg
Files:
wonders/a.webp

Copyright: Bob
License: CC-BY-2.0
Comments: cropping, sharpening
Files: b.webp wonders/d.webp

Copyright: Carol
License: CC0-1.0
Files: wonders/small.webp
"""


@pytest.mark.parametrize("version", [1, 2, 3])
def test_read_rcc_nested_raw_and_compressed(tmp_path, version):
    files = {"x/res/README": README.encode(), "x/res/wonders/a.webp": b"AAAA" * 100, "x/res/b.webp": b"B" * 7}
    write_rcc(tmp_path / "t.rcc", files, compress={"x/res/wonders/a.webp"}, version=version)
    assert read_rcc(tmp_path / "t.rcc") == files


def test_read_rcc_damaged_or_foreign_file_is_one_line_error(tmp_path):
    write_rcc(tmp_path / "t.rcc", {"a/b.webp": b"x" * 100}, compress={"a/b.webp"})
    blob = (tmp_path / "t.rcc").read_bytes()
    (tmp_path / "cut.rcc").write_bytes(blob[: len(blob) - 30])
    with pytest.raises(RarEdgeError, match=r"cut\.rcc is a damaged Qt resource file"):
        read_rcc(tmp_path / "cut.rcc")
    (tmp_path / "png.rcc").write_bytes(b"\x89PNG" + blob[4:])
    with pytest.raises(RarEdgeError, match=r"png\.rcc: not a Qt resource file"):
        read_rcc(tmp_path / "png.rcc")
    with pytest.raises(RarEdgeError, match="cannot read Qt resource file"):
        read_rcc(tmp_path / "missing.rcc")


def test_parse_readme_both_files_layouts():
    entries = parse_gcompris_readme(README)
    assert entries["wonders/a.webp"] == {"copyright": "Alice", "license": "CC0-1.0", "source": "https://example.org/a.jpg"}
    assert entries["b.webp"]["license"] == "CC-BY-2.0" and "sharpening" in entries["b.webp"]["comments"]
    assert entries["map.svg"]["license"] == "CC-BY-SA 4.0"


def _fake_gcompris(root: Path) -> None:
    rcc = root / GCOMPRIS_DIR
    rcc.mkdir(parents=True)
    for i, activity in enumerate(GCOMPRIS_RCC):
        prefix = f"gcompris/src/activities/{activity}/resource"
        files = {f"{prefix}/README": README.encode(),
                 f"{prefix}/wonders/a.webp": _webp((640, 520), i),     # licensed, big enough
                 f"{prefix}/b.webp": _webp((1100, 1030), i + 10),      # licensed, sharpened: halved, still >= 512
                 f"{prefix}/c.webp": _webp((700, 700), i + 20),        # no licence entry: left out
                 f"{prefix}/wonders/d.webp": _webp((600, 600), i + 30),  # licensed and sharpened, but < 2 x 512
                 f"{prefix}/wonders/small.webp": _webp((300, 200), i)}  # licensed, too small
        write_rcc(rcc / f"{activity}.rcc", files, compress={f"{prefix}/README"})


def test_gcompris_reader_keeps_licensed_photos_with_attribution(tmp_path):
    _fake_gcompris(tmp_path)
    photos = {p.name: p for p in gcompris(tmp_path, min_side=512)}
    assert sorted(photos) == sorted(f"gcompris_{a}_{n}" for a in GCOMPRIS_RCC for n in ("a", "b"))
    a = photos["gcompris_erase_a"]
    assert (a.licence, a.author, a.origin, a.sharpened) == ("CC0-1.0", "Alice", "https://example.org/a.jpg", False)
    assert photos["gcompris_erase_b"].sharpened and photos["gcompris_erase_b"].licence == "CC-BY-2.0"
    with a.open() as im:
        assert im.size == (640, 520)


def test_gcompris_missing_resource_file_names_it(tmp_path):
    _fake_gcompris(tmp_path)
    (tmp_path / GCOMPRIS_DIR / "erase.rcc").unlink()
    with pytest.raises(RarEdgeError, match="erase.rcc is missing from gcompris-qt-data"):
        gcompris(tmp_path, 512)


def test_build_folder_from_gcompris_fixture(tmp_path, monkeypatch):
    """The whole builder, with the package download replaced by the fixture tree (no network)."""
    pkg_root = tmp_path / "pkg"
    _fake_gcompris(pkg_root)
    (pkg_root / "usr/share/doc/gcompris-qt-data").mkdir(parents=True)
    (pkg_root / "usr/share/doc/gcompris-qt-data/copyright").write_text("GPL-3+ and per-image licences")
    monkeypatch.setattr(debian_photos, "unpack", lambda pkg, workdir: pkg_root)
    summary = build_photo_folder(tmp_path / "photos", holdout=6, packages=("gcompris-qt-data",), max_side=1024)
    root = tmp_path / "photos"
    sources = json.loads((root / "sources.json").read_text())
    held = {p.stem for p in (root / "heldout").iterdir()}
    assert summary["heldout"] == len(held) == 6 and summary["train"] == len(sources) - 6
    assert not any(sources[n]["sharpened"] for n in held)  # sharpened photos never judge a model
    assert sources["gcompris_erase_a"]["licence"] == "CC0-1.0" and sources["gcompris_erase_a"]["author"] == "Alice"
    assert (root / "licenses/gcompris-qt-data.txt").read_text().startswith("GPL-3+")
    with Image.open(root / sources["gcompris_erase_b"]["split"] / "gcompris_erase_b.png") as im:
        assert im.size == (550, 515)  # sharpened: halved before use


def test_build_folder_failure_leaves_nothing(tmp_path, monkeypatch):
    def broken(pkg, workdir):
        raise RarEdgeError(f"apt-get download {pkg} failed (E: Unable to locate package)")

    monkeypatch.setattr(debian_photos, "unpack", broken)
    with pytest.raises(RarEdgeError, match="apt-get download gcompris-qt-data failed"):
        build_photo_folder(tmp_path / "photos", packages=("gcompris-qt-data",))
    assert list(tmp_path.iterdir()) == []


def test_heldout_keeps_previous_split_and_skips_sharpened():
    names = {f"skimage_{c}": None for c in "abcdefghij"} | {"skimage_coffee": None, "gcompris_erase_x": None}
    held = choose_heldout(names, 4, sharpened={"gcompris_erase_x"})
    assert len(held) == 4 and "skimage_coffee" in held and "gcompris_erase_x" not in held
    assert held == choose_heldout(dict(reversed(list(names.items()))), 4, sharpened={"gcompris_erase_x"})
