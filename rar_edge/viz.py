"""Pictures for reports and the demo, drawn with Pillow alone (no plotting library dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from rar_edge.atomic import atomic_path

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _save(im: Image.Image, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def comparison_grid(rows: list[list[np.ndarray]], labels: list[str], header: list[str], path: str | Path,
                    cell: int = 192) -> None:
    """A grid of images (rows x columns, uint8 or float RGB) with a header row and a label per row."""
    pad, head, left = 4, 18, 0
    cols = max(len(r) for r in rows)
    im = Image.new("RGB", (left + cols * (cell + pad) + pad, head + len(rows) * (cell + head + pad) + pad), "white")
    draw = ImageDraw.Draw(im)
    for j, title in enumerate(header):
        draw.text((left + pad + j * (cell + pad), 3), title, fill="black")
    for i, (row, label) in enumerate(zip(rows, labels)):
        y = head + i * (cell + head + pad)
        draw.text((left + pad, y + 2), label, fill="black")
        for j, img in enumerate(row):
            arr = img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            tile = Image.fromarray(arr).resize((cell, cell), Image.Resampling.LANCZOS)
            im.paste(tile, (left + pad + j * (cell + pad), y + head))
    _save(im, path)


def line_plot(series: dict[str, list[float]], path: str | Path, title: str, xlabel: str, ylabel: str,
              size: tuple[int, int] = (720, 420)) -> None:
    """Lines (one per series, x = 0, 1, 2, ...) with axes, ticks and a legend."""
    w, h = size
    ml, mr, mt, mb = 56, 190, 30, 40  # margins: the legend sits on the right
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    values = [v for s in series.values() for v in s if np.isfinite(v)]  # an identical image's PSNR is inf
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    lo, hi = np.floor(lo) - 0.5, np.ceil(hi) + 0.5
    xmax = max((len(s) - 1 for s in series.values()), default=1) or 1

    def xy(i: float, v: float) -> tuple[float, float]:
        return ml + i / xmax * (w - ml - mr), h - mb - (v - lo) / (hi - lo) * (h - mt - mb)

    d.rectangle([ml, mt, w - mr, h - mb], outline="black")
    for i in range(xmax + 1):
        x, _ = xy(i, lo)
        d.line([x, h - mb, x, h - mb + 4], fill="black")
        d.text((x - 3, h - mb + 6), str(i), fill="black")
    for v in np.linspace(lo, hi, 6):
        _, y = xy(0, v)
        d.line([ml - 4, y, ml, y], fill="black")
        d.text((6, y - 6), f"{v:.1f}", fill="black")
    d.text((max(ml + 80, (w - mr + ml) // 2 - 3 * len(title)), 8), title, fill="black")  # clear of the y label
    d.text(((w - mr + ml) // 2 - 20, h - 16), xlabel, fill="black")
    d.text((6, mt - 22), ylabel, fill="black")
    for k, (name, s) in enumerate(series.items()):
        color = PALETTE[k % len(PALETTE)]
        pts = [xy(i, v) for i, v in enumerate(s) if np.isfinite(v)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        for x, y in pts:
            d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        ly = mt + 4 + 14 * k
        d.line([w - mr + 10, ly + 6, w - mr + 28, ly + 6], fill=color, width=3)
        d.text((w - mr + 32, ly), name[:26], fill="black")
    _save(im, path)
