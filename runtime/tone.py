"""The exposure stage in numpy: a global tone curve for under-exposed photos, before the restore loop.

``Restorer.restore(image, tone=True)`` (``rar-edge restore --tone``) runs it: the head reads the whole photo's
64² thumbnail (per-channel mean, spread, 16-bin soft histogram), returns a per-channel curve and a logit
"under-exposed"; where the logit reaches the head's gate (0) the photo goes through the curve, applied as a
lookup table per channel (256 entries for 8-bit photos: exact; 65536 for 16-bit and float ones), and the loop
restores the result. One curve per photo, not per tile: the tiles of a large photo stay consistent.

Opt-in because the thumbnail cannot tell an under-exposed photo from a dark scene exposed as intended: a night
shot is brightened too (BENCHMARKS.md). The head is rar_edge/model/tone.py's, trained by ``rar-edge
train-tone``; its files: ``tone.safetensors`` (w1, b1, w2, b2: float32) and ``config.json``. On a device, the
same head ships in every bundle as a graph of the bundle's format (export/tone.py), or is ~40 lines of
arithmetic (``features``, the MLP, ``curve_table``).
"""

from __future__ import annotations

import json
import math
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import rar_edge
from rar_edge.errors import RarEdgeError

from .images import FULL_SCALE

#: The head that ships with the package (``Restorer.restore(tone=True)`` uses it unless told otherwise).
DEFAULT_TONE = Path(rar_edge.__file__).resolve().parent / "weights" / "tone"
#: The integer range each pixel type is looked up in (float photos are rounded to 16 bits first: at most
#: 8e-6 off before the curve, far below what an 8-bit output shows).
LEVELS = {dtype: int(top) for dtype, top in FULL_SCALE.items()}
RETRAIN = "train one with rar-edge train-tone (or leave --tone-head out for the shipped one)"
#: A head's files (``rar-edge train-tone`` writes them; bundles carry them in ``tone/``).
WEIGHTS, CONFIG = "tone.safetensors", "config.json"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file (8-byte header length, JSON header, raw little-endian data);
    a file that is not one, or is cut short, raises a one-line RarEdgeError."""
    raw = path.read_bytes()
    try:
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
        data, out = raw[8 + n :], {}
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            if meta.get("dtype") != "F32":
                raise ValueError(f"tensor {name} is {meta.get('dtype')}; the runtime reads F32 only")
            lo, hi = (int(v) for v in meta["data_offsets"])
            shape = [int(v) for v in meta["shape"]]
            if not 0 <= lo <= hi <= len(data) or hi - lo != 4 * math.prod(shape):
                raise ValueError(f"tensor {name}'s bytes are missing (the file is cut short?)")
            out[name] = np.frombuffer(data[lo:hi], "<f4").reshape(shape)
    except (struct.error, ValueError, TypeError, KeyError, AttributeError) as e:
        raise RarEdgeError(f"{path} is not a readable safetensors file ({e}); {RETRAIN}") from None
    return out


def adaptive_mean(x: np.ndarray, size: int) -> np.ndarray:
    """(H,W,C) -> (size,size,C): torch's ``adaptive_avg_pool2d`` (bin i spans [floor(iH/s), ceil((i+1)H/s)))."""
    def rows(a: np.ndarray) -> np.ndarray:  # pools axis 0 (slices: no copy of the photo)
        n = len(a)
        return np.stack([a[i * n // size : -(-(i + 1) * n // size)].mean(0, dtype=np.float64) for i in range(size)])
    return rows(rows(x).swapaxes(0, 1)).swapaxes(0, 1)


@dataclass(frozen=True)
class ToneDecision:
    """What the stage did to one photo."""

    applied: bool
    logit: float  # the head's "under-exposed" logit (applied where it reaches the gate)
    gate: float
    ms: float = 0.0  # the stage's time: the estimate, and the curve where applied

    def to_json(self) -> dict:
        return {"applied": self.applied, "under_exposed_logit": round(self.logit, 3), "gate": self.gate}


class ToneCurve:
    """A trained tone head (see the module docstring)."""

    def __init__(self, weights: dict[str, np.ndarray], iters: int, thumb: int, bins: int, gate: float):
        self.w, self.iters, self.thumb, self.bins, self.gate = weights, iters, thumb, bins, gate
        w1, b1, w2, b2 = (weights[k] for k in ("w1", "b1", "w2", "b2"))
        hidden, n_in, n_out = w1.shape[0] if w1.ndim == 2 else -1, 6 + 3 * bins, 3 * iters + 7
        if (w1.shape, b1.shape, w2.shape, b2.shape) != ((hidden, n_in), (hidden,), (n_out, hidden), (n_out,)):
            raise RarEdgeError(f"the tone head's layers ({w1.shape}, {b1.shape}, {w2.shape}, {b2.shape}) do not match "
                               f"its config ({n_in} features in, {n_out} numbers out); {RETRAIN}")
        if not math.isfinite(gate):
            raise RarEdgeError(f"the tone head's gate_logit must be a finite number, got {gate}; {RETRAIN}")

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "ToneCurve":
        """The head in ``folder`` (``rar-edge train-tone --out``), or the shipped one (None)."""
        folder = DEFAULT_TONE if folder is None else Path(folder)
        if not folder.is_dir():
            raise RarEdgeError(f"no tone head in {folder} (not a folder): pass a folder written by rar-edge train-tone")
        try:
            config = json.loads((folder / CONFIG).read_text())
            weights = read_safetensors(folder / WEIGHTS)
        except FileNotFoundError as e:
            raise RarEdgeError(f"no tone head in {folder} ({Path(e.filename).name} missing): pass a folder "
                               "written by rar-edge train-tone") from None
        except (OSError, ValueError) as e:  # unreadable, or config.json not JSON
            raise RarEdgeError(f"cannot read the tone head in {folder} ({e}); {RETRAIN}") from None
        if not isinstance(config, dict) or config.get("kind") != "rar-edge tone head" \
                or not {"w1", "b1", "w2", "b2"} <= set(weights):
            raise RarEdgeError(f"{folder} does not hold a tone head; {RETRAIN}")
        try:
            sizes = [int(config[k]) for k in ("iters", "thumb", "bins")]
            gate = float(config.get("gate_logit", 0.0))
        except (KeyError, TypeError, ValueError) as e:
            raise RarEdgeError(f"{folder}/config.json: bad or missing size ({e}); {RETRAIN}") from None
        return cls(weights, *sizes, gate)

    def thumbnail(self, rgb: np.ndarray) -> np.ndarray:
        """(thumb, thumb, 3) in [0, 1]: an (H,W,3) image (uint8, uint16 or float in [0, 1]) averaged over
        ``thumb`` x ``thumb`` bins, taken from the pixels as they are (no float copy of the photo). A bundle's
        tone graph reads this, as (1, 3, thumb, thumb) float32 (export/tone.py)."""
        return adaptive_mean(rgb, self.thumb) / LEVELS.get(rgb.dtype, 1)

    def features(self, rgb: np.ndarray) -> np.ndarray:
        """The head's input for an (H,W,3) image, as ``thumbnail`` takes it (rar_edge/model/tone.py ``features``
        of the image in [0, 1])."""
        t = self.thumbnail(rgb).reshape(-1, 3)
        centers = np.linspace(0, 1, self.bins)
        hist = np.maximum(0, 1 - np.abs(t[:, :, None] - centers) * (self.bins - 1)).mean(0)  # (3, bins)
        return np.concatenate([t.mean(0), t.std(0, ddof=1), hist.reshape(-1)]).astype(np.float32)

    def estimate(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """(curve parameters, "under-exposed" logit) for an (H,W,3) image (as ``features`` takes it)."""
        h = np.maximum(0, self.w["w1"] @ self.features(rgb) + self.w["b1"])
        p = self.w["w2"] @ h + self.w["b2"]
        return p[:-1], float(p[-1])

    def curve_table(self, params: np.ndarray, levels: int = 255) -> np.ndarray:
        """(3, levels + 1): each channel's curve at the values 0, 1/levels, ..., 1."""
        k = self.iters
        alpha = np.tanh(params[: 3 * k]).reshape(k, 3, 1)
        gain, offset = np.exp(params[3 * k : 3 * k + 3])[:, None], params[3 * k + 3 :][:, None]
        y = np.broadcast_to(np.linspace(0, 1, levels + 1), (3, levels + 1)).astype(np.float64)
        for a in alpha:
            y = y + a * y * (1 - y)
        return np.clip(gain * y + offset, 0, 1).astype(np.float32)

    def apply(self, rgb: np.ndarray, params: np.ndarray) -> np.ndarray:
        """``rgb`` (H,W,3: uint8, uint16 or float in [0, 1]) through the curve: a new float32 image in [0, 1].
        One table lookup per value (a 12 MP photo: no float copy of the input, no interpolation)."""
        levels = LEVELS.get(rgb.dtype, 65535)
        table = self.curve_table(params, levels)
        out = np.empty(rgb.shape, np.float32)
        for c in range(3):
            ch = rgb[..., c]
            idx = ch if rgb.dtype in LEVELS else np.rint(np.clip(ch, 0, 1) * levels).astype(np.uint16)
            out[..., c] = table[c][idx]
        return out

    def decide(self, rgb: np.ndarray) -> ToneDecision:
        """Whether the stage would apply its curve to this image (the estimate alone; ``applied``: it would)."""
        return self._run(rgb, apply=False)[1]

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, ToneDecision]:
        """The image through the curve where the head says under-exposed (a new float32 image; else ``rgb``
        itself, as it came), and why (with the stage's time in ``ms``)."""
        return self._run(rgb, apply=True)

    def _run(self, rgb: np.ndarray, apply: bool) -> tuple[np.ndarray, ToneDecision]:
        """The one rule: the curve where the logit reaches the gate (computed only when ``apply``)."""
        t0 = time.perf_counter()
        params, logit = self.estimate(rgb)
        applied = logit >= self.gate
        out = self.apply(rgb, params) if applied and apply else rgb
        return out, ToneDecision(applied=applied, logit=logit, gate=self.gate, ms=(time.perf_counter() - t0) * 1e3)
