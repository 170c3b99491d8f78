"""What a stage outside the model costs on this machine (the JPEG grid's report, the noise stage), so that a
budgeted ``Restorer.restore`` runs it only where the time left pays for it and never breaks its budget for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

#: A budget runs the JPEG grid's report where the time left pays for this many times its predicted cost: its rate per
#: megapixel varies 3x with the photo's size (whole up to 1535 px a side, sampled above; bench/jpeg_grid.py).
GRID_MARGIN = 4.0
#: ... and the noise stage (runtime/denoise.py) where it pays for this many: its time hardly varies with the pixels
#: (99-126 ms at 512² on photo, flat and random pixels on a 2-core Xeon; BENCHMARKS.md "The noise stage").
NOISE_MARGIN = 2.0


@dataclass
class StageCost:
    """A stage's price per photo size, from what it took on this machine.

    Its cost per megapixel need not be one number: the JPEG grid reads photos up to 1535 pixels a side whole and
    larger ones on a sample of lines, so its rate peaks at about 3.5 MP (2300x1535) and falls for larger photos
    (bench/jpeg_grid.py times the sizes; BENCHMARKS.md). So the rate kept is the *highest* measured on photos of
    at least MIN_MP (a warm-up at a 512² tile is one), never lowered, and a budget must leave ``margin`` times the
    prediction (GRID_MARGIN, NOISE_MARGIN). Under MIN_MP fixed costs dominate: such a photo is priced as a MIN_MP
    one (or as the most a small photo took, where that is more), and its own time never lowers a large photo's
    price. Until a large photo is
    measured (a bundle whose tile is under 500², warmed up on that), large photos are priced at the highest rate
    a small photo showed, which its fixed costs make the higher one.
    """

    margin: float
    MIN_MP: ClassVar[float] = 0.25
    rate: float | None = None  # ms per megapixel: the highest measured on photos of at least MIN_MP
    small_ms: float | None = None  # the most a photo under MIN_MP took
    small_rate: float | None = None  # the highest ms per megapixel of a photo under MIN_MP

    def predict(self, height: int, width: int) -> float | None:
        """The stage's predicted ms on a photo of this size; None: nothing measured says."""
        mp = height * width / 1e6
        if mp >= self.MIN_MP:
            rate = self.rate if self.rate is not None else self.small_rate
            return None if rate is None else rate * mp
        known = [v for v in (self.rate and self.rate * self.MIN_MP, self.small_ms) if v is not None]
        return max(known) if known else None

    def affordable(self, height: int, width: int, left_ms: float) -> bool:
        """Whether ``left_ms`` pays for ``margin`` times the predicted cost (False while nothing is measured)."""
        predicted = self.predict(height, width)
        return predicted is not None and self.margin * predicted <= left_ms

    def record(self, height: int, width: int, ms: float) -> None:
        """The stage took ``ms`` on a photo of this size."""
        mp = height * width / 1e6
        if mp >= self.MIN_MP:
            self.rate = max(self.rate or 0.0, ms / mp)
        elif mp > 0:
            self.small_ms = max(self.small_ms or 0.0, ms)
            self.small_rate = max(self.small_rate or 0.0, ms / mp)
