"""Photo folders: recursive discovery, skipped files counted, clear errors, deterministic crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rar_edge.data.folder import PhotoFolder
from rar_edge.errors import RarEdgeError


def test_recursive_formats_and_skips(tmp_path, photo_array):
    arr = (photo_array * 255).astype(np.uint8)
    (tmp_path / "a" / "b").mkdir(parents=True)
    Image.fromarray(arr).save(tmp_path / "one.png")
    Image.fromarray(arr).save(tmp_path / "a" / "two.jpg")
    Image.fromarray(arr).save(tmp_path / "a" / "b" / "three.webp")
    Image.fromarray(arr[:20, :20]).save(tmp_path / "small.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "readme.txt").write_text("ignored: not an image suffix")
    folder = PhotoFolder(tmp_path)
    assert len(folder) == 3
    assert folder.skipped == {"unreadable": 1, "too_small": 1}
    assert {p.name for p in folder.paths} == {"one.png", "two.jpg", "three.webp"}


def test_crops_are_deterministic_and_in_range(tmp_path, photo_array):
    Image.fromarray((photo_array * 255).astype(np.uint8)).save(tmp_path / "x.png")
    folder = PhotoFolder(tmp_path)
    a = folder.random_crops(4, 48, torch.Generator().manual_seed(3))
    b = folder.random_crops(4, 48, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 48, 48) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    big = folder.random_crops(2, 256, torch.Generator().manual_seed(0))  # larger than the photo: upscaled
    assert big.shape == (2, 3, 256, 256)
    assert folder.center_crops(64).shape == (1, 3, 64, 64)


def test_errors(tmp_path):
    with pytest.raises(RarEdgeError, match="does not exist"):
        PhotoFolder(tmp_path / "missing")
    with pytest.raises(RarEdgeError, match="no usable image"):
        PhotoFolder(tmp_path)


def test_large_photos_are_downscaled(tmp_path):
    Image.fromarray(np.zeros((300, 500, 3), np.uint8)).save(tmp_path / "big.png")
    folder = PhotoFolder(tmp_path, max_side=200)
    assert max(folder.images[0].shape[:2]) == 200


def test_build_photo_folder_offline(tmp_path):
    import json

    from rar_edge.data.photos import SKIMAGE_PHOTOS, build_photo_folder

    summary = build_photo_folder(tmp_path / "photos", holdout=3, use_debian=False, max_side=256)
    root = tmp_path / "photos"
    train, held = sorted((root / "train").iterdir()), sorted((root / "heldout").iterdir())
    assert (summary["train"], summary["heldout"]) == (len(SKIMAGE_PHOTOS) - 3, 3) == (len(train), len(held))
    assert not {p.name for p in train} & {p.name for p in held}
    sources = json.loads((root / "sources.json").read_text())
    assert {v["split"] for v in sources.values()} == {"train", "heldout"}
    with Image.open(train[0]) as im:
        assert max(im.size) <= 256
    # Same split every time: the held-out photos are a function of the names.
    again = build_photo_folder(tmp_path / "again", holdout=3, use_debian=False, max_side=256)
    assert sorted(p.name for p in (tmp_path / "again" / "heldout").iterdir()) == [p.name for p in held]
    assert again == {**summary, "out": str(tmp_path / "again")}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
