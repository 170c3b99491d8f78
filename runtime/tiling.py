"""Tiles of a fixed size over any image, with overlap, and their blending back into one image.

Memory follows the tile: the model only ever sees one tile. Seams are hidden by overlapping tiles and a
weight window that falls linearly to (almost) zero at each tile edge that lies inside the image, so every
output pixel is a weighted mean of the tiles that cover it and no tile edge shows. Images smaller than a
tile (down to 1x1) are padded by edge replication and cropped back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    y: int
    x: int  # top-left corner in the (padded) image


def starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile starts along one side: first at 0, last flush with the end, spaced at most tile - overlap."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    n = -(-(length - tile) // stride) + 1  # ceil
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def grid(height: int, width: int, tile: tuple[int, int], overlap: int) -> list[Tile]:
    """Tiles covering an image of at least the tile's size."""
    return [Tile(y, x) for y in starts(height, tile[0], overlap) for x in starts(width, tile[1], overlap)]


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H,W,C) padded at the bottom/right to at least (height, width) by edge replication."""
    ph, pw = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return image


def window(tile: tuple[int, int], overlap: int, edges: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """(h,w) blending weights: ramps over ``overlap`` pixels on the sides where ``edges`` (top, bottom,
    left, right) has a neighbour tile; 1 elsewhere. Never exactly 0, so a pixel always has weight."""
    def ramp(n: int, lo: bool, hi: bool) -> np.ndarray:
        w = np.ones(n, dtype=np.float32)
        r = (np.arange(1, overlap + 1, dtype=np.float32)) / (overlap + 1)
        if overlap and lo:
            w[:overlap] = r
        if overlap and hi:
            w[n - overlap:] = r[::-1]
        return w

    top, bottom, left, right = edges
    return np.outer(ramp(tile[0], top, bottom), ramp(tile[1], left, right))


class Blender:
    """Accumulates weighted tiles into an (H,W,C) float32 image."""

    def __init__(self, height: int, width: int, channels: int, tile: tuple[int, int], overlap: int):
        self.acc = np.zeros((height, width, channels), dtype=np.float32)
        self.weight = np.zeros((height, width, 1), dtype=np.float32)
        self.tile, self.overlap = tile, overlap
        self.ys = set(starts(height, tile[0], overlap))
        self.xs = set(starts(width, tile[1], overlap))

    def add(self, t: Tile, pixels: np.ndarray) -> None:
        th, tw = self.tile
        edges = (t.y > 0, t.y < max(self.ys), t.x > 0, t.x < max(self.xs))
        w = window(self.tile, self.overlap, edges)[..., None]
        self.acc[t.y:t.y + th, t.x:t.x + tw] += pixels * w
        self.weight[t.y:t.y + th, t.x:t.x + tw] += w

    def result(self) -> np.ndarray:
        return self.acc / self.weight
