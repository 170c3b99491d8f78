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


def pad_mode(height: int, width: int, pad_h: int, pad_w: int) -> str:
    """How an image is padded at the bottom/right, everywhere (runtime tiles and the torch reference path):
    mirrored without repeating the edge row where the pad is smaller than the side, else the edge repeated."""
    return "reflect" if pad_h < height and pad_w < width else "edge"


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H,W,C) padded at the bottom/right to at least (height, width), by ``pad_mode``."""
    ph, pw = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if ph or pw:
        image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode=pad_mode(image.shape[0], image.shape[1], ph, pw))
    return image


def ramp(n: int, overlap: int, lo: bool, hi: bool) -> np.ndarray:
    """(n,) blending weights along one side of a tile: rising over its first ``overlap`` pixels where
    ``lo`` (a neighbour before it), falling over its last where ``hi``; 1 elsewhere, and never 0."""
    w = np.ones(n, dtype=np.float32)
    r = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
    if overlap and lo:
        w[:overlap] = r
    if overlap and hi:
        w[n - overlap:] = r[::-1]
    return w


def window(tile: tuple[int, int], overlap: int, edges: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """(h,w) blending weights of a tile with neighbours on the sides where ``edges`` (top, bottom, left,
    right) is true: the outer product of its two ramps."""
    top, bottom, left, right = edges
    return np.outer(ramp(tile[0], overlap, top, bottom), ramp(tile[1], overlap, left, right))


def summed_ramps(length: int, tile: int, overlap: int) -> np.ndarray:
    """(length,) sum of the ramps of every tile along one side of the image."""
    firsts = starts(length, tile, overlap)
    total = np.zeros(length, dtype=np.float32)
    for s in firsts:
        total[s:s + tile] += ramp(tile, overlap, s > 0, s < firsts[-1])
    return total


class Blender:
    """Accumulates weighted tiles into an (H,W,C) float32 image.

    The tiles form a full grid and each window is the outer product of a row ramp and a column ramp, so
    the weights summed over all tiles are separable too: outer(summed row ramps, summed column ramps).
    Two vectors stand in for an (H,W) weight map, and ``result`` divides in place: at 12 MP that holds
    two full-size float32 buffers fewer (BENCHMARKS.md, memory of a 12 MP photo).
    """

    def __init__(self, height: int, width: int, channels: int, tile: tuple[int, int], overlap: int):
        self.acc = np.zeros((height, width, channels), dtype=np.float32)
        self.tile, self.overlap = tile, overlap
        self.last = (starts(height, tile[0], overlap)[-1], starts(width, tile[1], overlap)[-1])
        self.row_weight = summed_ramps(height, tile[0], overlap)
        self.col_weight = summed_ramps(width, tile[1], overlap)

    def add(self, t: Tile, pixels: np.ndarray) -> None:
        th, tw = self.tile
        edges = (t.y > 0, t.y < self.last[0], t.x > 0, t.x < self.last[1])
        self.acc[t.y:t.y + th, t.x:t.x + tw] += pixels * window(self.tile, self.overlap, edges)[..., None]

    def result(self) -> np.ndarray:
        """The blended image, divided in the accumulator's own buffer (call it once, after the last tile)."""
        self.acc /= self.row_weight[:, None, None]
        self.acc /= self.col_weight[None, :, None]
        return self.acc
