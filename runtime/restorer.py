"""``Restorer``: load a bundle, then restore images of any size with the adaptive loop under a budget."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

import rar_edge
from rar_edge.errors import RarEdgeError
from rar_edge.loop import Gate, Judge, StopRule, is_number
from rar_edge.manifest import verify_bundle

from .backends import ENTRY_POINTS, open_backend
from .images import FULL_SCALE, check_megapixels, unit_float
from .denoise import BLOCK as DENOISE_BLOCK
from .denoise import denoise as denoise_stage
from .jpeg_grid import grid_probability, with_grid
from .profile import DeviceProfile, load_profile
from .scheduler import OVERHEAD, CostModel, LoopOutcome, adaptive_loop, overhead_per_pass
from .stage_cost import GRID_MARGIN, NOISE_MARGIN, StageCost
from .tiling import Blender, grid, pad_to
from .tone import ToneCurve, ToneDecision

DEFAULT_TILE = 512  # for dynamic bundles
#: The largest tile side accepted: a tile's activations grow with its area (warmup() restores one at once),
#: and larger tiles gain nothing once a photo fits in one.
MAX_TILE = 4096
#: The bundle ``Restorer.load()``, ``rar-edge restore`` and ``rar-edge assess`` use when none is named: the
#: committed rar-edge-s-conv weights (its manifest's ``source``: checkpoints/rar-edge-s-conv-v2) exported to fp32
#: ONNX with dynamic sizes (torch-free; on CPUs without VNNI onnxruntime runs fp32 faster than int8:
#: BENCHMARKS.md). tests/test_shipped.py checks it still matches those weights.
DEFAULT_BUNDLE = Path(rar_edge.__file__).resolve().parent / "weights" / "bundles" / "rar-edge-s-conv-fp32-onnx"
#: A rule that takes exactly one step and decodes it (warm-up and profiling: every entry point runs).
FORCED_STEP = dict(max_steps=1, target_quality=1e9, min_gain=-1e9, min_change=0.0, keep="last", min_better=0.0,
                   min_detect=0.0)


@dataclass
class RestoreResult:
    image: Any  # like the input: an array of its dtype and shape, or a PIL image (RGB/RGBA when restored);
    #            with no step kept (and no tone curve or noise stage), a copy of the input exactly as given
    steps: int  # restore steps behind the returned image (the latent the stop rule keeps; 0: the input's)
    steps_run: int
    quality: list[float]  # assessed quality (dB) of the input, then after each step
    degradations: dict[str, float]  # probabilities of the input's degradations, by name
    stop_reason: str  # clean | target | no_gain | small_step | max_steps | worse | budget
    ms: dict[str, float]  # per entry point (summed over tiles and steps), overhead and total
    budget_ms: float | None = None
    budget_bound: bool = False  # the budget, not the stop rule, ended the loop
    model_skipped: bool = False  # the budget could not pay for encode + decode: input returned as is
    cost_unknown: bool = False  # skipped because nothing says what the model costs here: warmup() or a profile
    waited_out: bool = False  # the wait for another thread's restore (ms["wait"]) alone used up the budget
    tiles: int = 1
    alpha: np.ndarray | None = field(default=None, repr=False)
    tone: ToneDecision | None = None  # the exposure stage's decision, when asked for (restore(tone=True))
    # Probability that the input was JPEG-compressed, from its 8×8 grid (runtime/jpeg_grid.py); None where the
    # budget left no time for it (Restorer._stage)
    jpeg_grid: float | None = None
    # Skipped because the budget could not pay for encode + assess + decode: the time already spent and what they
    # were predicted to take (the smallest budget that runs the model on this photo, as far as the cost model
    # knows); else None
    needed_ms: float | None = None
    # The noise stage ran on the returned image (runtime/denoise.py): noise was found in the input
    denoised: bool = False
    # Noise was found, but the budget's time left did not pay for the noise stage (StageCost)
    denoise_skipped: bool = False

    @property
    def unchanged(self) -> bool:
        """The input came back as given: no step kept, no tone curve applied, no noise stage."""
        return self.steps == 0 and not (self.tone and self.tone.applied) and not self.denoised

    def to_json(self) -> dict:
        return {"steps": self.steps, "steps_run": self.steps_run, "quality": [round(q, 3) for q in self.quality],
                "degradations": {k: round(v, 4) for k, v in self.degradations.items()},
                "stop_reason": self.stop_reason, "ms": {k: round(v, 2) for k, v in self.ms.items()},
                "budget_ms": self.budget_ms, "budget_bound": self.budget_bound,
                "model_skipped": self.model_skipped, "cost_unknown": self.cost_unknown, "waited_out": self.waited_out,
                "tiles": self.tiles, "jpeg_grid": None if self.jpeg_grid is None else round(self.jpeg_grid, 4),
                "needed_ms": None if self.needed_ms is None else round(self.needed_ms, 1),
                "denoised": self.denoised, "denoise_skipped": self.denoise_skipped,
                **({"tone": self.tone.to_json()} if self.tone else {})}


@dataclass
class Assessment:
    """The assessor alone on one image (RAR's latent quality assessment: a no-reference detector)."""

    quality: float  # predicted PSNR (dB) of the image against its clean original (tiles pooled: pool_psnr)
    degradations: dict[str, float]  # probability of each degradation, by name (mean over the tiles)
    present: list[str]  # the degradations with a probability of at least ``threshold``
    threshold: float
    tiles: int
    ms: float
    tile_quality: list[float] | None = None  # per tile (raster order), when asked for
    tone: ToneDecision | None = None  # assess(tone=True): would restore(tone=True) apply its curve here?
    jpeg_grid: float = 0.0  # probability of JPEG compression from the codec's 8×8 grid (runtime/jpeg_grid.py)

    def to_json(self) -> dict:
        out = {"quality": round(self.quality, 3), "degradations": {k: round(v, 4) for k, v in self.degradations.items()},
               "jpeg_grid": round(self.jpeg_grid, 4), "present": self.present, "threshold": self.threshold,
               "tiles": self.tiles, "ms": round(self.ms, 2)}
        if self.tile_quality is not None:
            out["tile_quality"] = [round(q, 3) for q in self.tile_quality]
        if self.tone is not None:
            out["tone"] = self.tone.to_json()
        return out


#: A degradation counts as found at this probability or above (``present``): the runtime's assess, the CLI
#: and the demo all say "found" by this one rule.
FOUND_AT = 0.5


def present(probs: dict[str, float], threshold: float = FOUND_AT, jpeg_grid: float | None = None) -> list[str]:
    """The names in ``probs`` (degradation -> probability) with a probability of at least ``threshold``, and
    "jpeg" where ``jpeg_grid`` (the JPEG grid's probability: runtime/jpeg_grid.py; None: not measured) reaches it."""
    return [name for name, p in with_grid(probs, jpeg_grid or 0.0).items() if p >= threshold]


def wants_noise_stage(probabilities: dict[str, float], height: int, width: int) -> bool:
    """Whether ``restore`` runs its noise stage (runtime/denoise.py) on a photo of this size whose input was assessed
    ``probabilities``: where ``present`` finds noise (not the loop's clean gate, which may pass mild noise through
    untouched: the stage still runs there), on photos at least a DCT window a side."""
    return "noise" in present(probabilities) and min(height, width) >= DENOISE_BLOCK


def as_rgb(image: Any) -> tuple[np.ndarray, np.ndarray | None, Any]:
    """(RGB pixels, alpha in [0,1] or None, how to give the result back) for an array or PIL image.

    The RGB pixels stay uint8 / uint16 when they come so (the caller's array itself when it is already
    contiguous RGB: the runtime only reads it) and are converted to float tile by tile (``unit_float``):
    a 12 MP uint8 photo then has no full-size float32 copy (but for the exposure stage's output, under
    ``tone=True`` where its curve applies). Float input is read as float32; the result
    comes back in the input's own dtype (``give_back``).
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        from .images import split_pil

        loaded = split_pil(image, upright=False)  # like a numpy array: its pixels as they are, its size kept
        return loaded.rgb, loaded.alpha, "pil"
    if not isinstance(image, np.ndarray):
        raise RarEdgeError(f"image must be a numpy array or a PIL image, not {type(image).__name__}")
    arr = image
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or min(arr.shape[:2]) < 1:
        raise RarEdgeError(f"image array must be (H,W), (H,W,3) or (H,W,4), got shape {image.shape}")
    if arr.dtype in FULL_SCALE:
        x = arr
    elif arr.dtype in (np.float16, np.float32, np.float64):
        x = arr.astype(np.float32, copy=False)
        lo, hi = float(x.min()), float(x.max())  # NaN propagates into min/max: one pass checks both
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise RarEdgeError("image holds NaN or Inf values; pass finite values in [0, 1]")
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise RarEdgeError(f"float image values must be in [0, 1], got [{lo:.3g}, {hi:.3g}]")
        if lo < 0 or hi > 1:
            x = np.clip(x, 0, 1)
    else:
        raise RarEdgeError(f"image dtype {arr.dtype} is not supported; use uint8, uint16 or float in [0, 1]")
    alpha = unit_float(x[..., 3]) if x.shape[2] == 4 else None
    rgb = np.repeat(x, 3, axis=2) if x.shape[2] == 1 else x[..., :3]
    return np.ascontiguousarray(rgb), alpha, (image.dtype, image.shape)


def give_back(rgb: np.ndarray, alpha: np.ndarray | None, kind: Any) -> Any:
    """The restored RGB in the form the input came in."""
    if kind == "pil":
        from PIL import Image

        from .images import to_uint8

        if alpha is not None:
            return Image.fromarray(np.dstack([to_uint8(rgb), to_uint8(alpha)]), "RGBA")
        return Image.fromarray(to_uint8(rgb), "RGB")
    dtype, shape = kind
    # rgb is the runtime's own buffer (the decode's, or a copy of the input), so it is scaled in place:
    # a 12 MP photo holds no extra full-size float32 copy on the way out.
    out = np.clip(rgb, 0, 1, out=rgb)
    if len(shape) == 2 or shape[2] == 1:
        out = out.mean(axis=2)  # gray in, gray out (the model works in RGB)
        out = out if len(shape) == 2 else out[..., None]
    elif shape[2] == 4:
        out = np.dstack([out, alpha])
    if dtype in (np.uint8, np.uint16):
        top = 255 if dtype == np.uint8 else 65535
        out *= top
        out += 0.5
        return out.astype(dtype)
    return out.astype(dtype, copy=False)  # float16 / float32 / float64 as given


#: The largest budget taken (a day): a wait for the lock cannot be longer than the platform's timeout allows,
#: and no call needs more. None means no budget.
MAX_BUDGET_MS = 86_400_000.0


def wait_reserve_ms(image: Any) -> float:
    """What a budgeted call keeps back from its wait for another thread's restore: 1 ms for a late wake-up, and
    1 ms per megabyte of the input (copying it back, at a conservative 1 GB/s)."""
    if isinstance(image, np.ndarray):
        nbytes = image.nbytes
    elif hasattr(image, "getbands"):  # a PIL image: a byte per band and pixel (16-bit modes are rare)
        nbytes = image.width * image.height * len(image.getbands())
    else:  # not an image: as_rgb says so once the lock is held
        nbytes = 0
    return 1.0 + nbytes / 1e6


def spread(n: int, most: int | None) -> list[int]:
    """Indices of ``most`` of ``n`` tiles (all of them when None or ``most >= n``): the tile at the centre of
    each of ``most`` equal runs in raster order, so one tile is the middle one and more spread out."""
    if most is None or most >= n:
        return list(range(n))
    return [int((i + 0.5) * n / most) for i in range(most)]


def pool_psnr(per_tile_db: list[float]) -> float:
    """The PSNR of a whole image from its tiles' PSNRs: their errors (MSE) averaged, then back to dB.

    The quality score is a predicted PSNR, and the stop rule is fitted on whole crops; a mean of the tiles'
    dB would rate an image with one bad tile far above its true PSNR (a mean of logs), so loops stopped early.
    """
    mse = np.mean(np.power(10.0, -np.asarray(per_tile_db, dtype=np.float64) / 10.0))
    return float(-10.0 * np.log10(mse))


def as_f32(z: np.ndarray) -> np.ndarray:
    """A held latent as the backends take it: float32 (no copy when it already is)."""
    return z.astype(np.float32, copy=False)


class _TiledImage:
    """LoopOps over the tiles of one image; the assessor decides per image (tiles pooled: ``pool_psnr``)."""

    def __init__(self, restorer: "Restorer", rgb: np.ndarray):
        self.r = restorer
        th, tw = restorer.tile_for(rgb.shape[0], rgb.shape[1])
        self.tile = (th, tw)
        self.padded = pad_to(rgb, th, tw)
        self.tiles = grid(self.padded.shape[0], self.padded.shape[1], self.tile, restorer.overlap_for(self.tile))
        self.assessed = spread(len(self.tiles), restorer.assess_tiles)

    def calls(self, entry: str) -> int:
        """How many backend calls one call of ``entry`` on the whole image makes (overhead: per tile)."""
        return len(self.assessed) if entry == "assess" else len(self.tiles)

    def _crop(self, t) -> np.ndarray:
        th, tw = self.tile
        return np.ascontiguousarray(unit_float(self.padded[t.y:t.y + th, t.x:t.x + tw]).transpose(2, 0, 1)[None])

    def _held(self, z: np.ndarray) -> np.ndarray:
        """A latent as it is kept between calls: float16 with ``half_latents`` (half the memory), else as is."""
        return z.astype(np.float16) if self.r.half_latents else z

    def encode(self):
        return [self._held(self.r.call("encode", [self._crop(t)])[0]) for t in self.tiles]

    def assess(self, state, per_tile: list[float] | None = None):
        """(pooled quality, mean probabilities, mean conditioning) over the assessed tiles; ``per_tile``, if
        given, receives each assessed tile's quality."""
        outs = [self.r.call("assess", [as_f32(state[i])]) for i in self.assessed]
        tile_db = [float(np.ravel(q)[0]) for q, _, _ in outs]
        if per_tile is not None:
            per_tile.extend(tile_db)
        quality = pool_psnr(tile_db)
        probs = np.mean([np.ravel(p) for _, p, _ in outs], axis=0)
        cond = np.mean([c for _, _, c in outs], axis=0).astype(np.float32)
        return quality, probs.tolist(), cond

    def restore(self, state, cond):
        return [self._held(self.r.call("restore", [as_f32(z), cond])[0]) for z in state]

    def change(self, state, proposed) -> float:
        """Relative size of a proposed step over all tiles: |proposed - state| / |state| (in float32)."""
        moved = size = 0.0
        for z, p in zip(state, proposed):
            z = as_f32(z)
            d = as_f32(p) - z  # one difference per tile, not two
            moved += float(np.vdot(d, d))
            size += float(np.vdot(z, z))
        return (moved / max(size, 1e-24)) ** 0.5

    def decode(self, state):
        if len(self.tiles) == 1:  # nothing to blend
            return self.r.call("decode", [as_f32(state[0])])[0][0].transpose(1, 2, 0)
        blend = Blender(self.padded.shape[0], self.padded.shape[1], 3, self.tile, self.r.overlap_for(self.tile))
        for t, z in zip(self.tiles, state):
            blend.add(t, self.r.call("decode", [as_f32(z)])[0][0].transpose(1, 2, 0))
        return blend.result()


class Restorer:
    """A bundle on a backend, with the stop rule and a latency budget scheduler.

    ``restore`` may be called from several threads: calls are serialised by a lock (one model, one
    device); use one Restorer per thread to run in parallel.
    """

    def __init__(self, bundle: Path, manifest: dict, backend, profile: DeviceProfile | None = None,
                 tile: int | None = None, overlap: int | None = None, max_megapixels: float | None = None,
                 assess_tiles: int | None = None, half_latents: bool = False, tone_head: str | Path | None = None):
        self.bundle, self.manifest, self.backend = Path(bundle), manifest, backend
        self.tone_head = tone_head  # the exposure stage's head folder (None: the bundle's or the shipped one: tone_curve)
        self._tone = ToneCurve.load(tone_head) if tone_head is not None else None  # a named one: checked now
        self.half_latents = bool(half_latents)  # keep the tiles' latents in float16 between calls
        whole = isinstance(assess_tiles, (int, np.integer)) and not isinstance(assess_tiles, bool)
        if assess_tiles is not None and not (whole and assess_tiles >= 1):
            raise RarEdgeError(f"assess_tiles must be a whole number of tiles >= 1 (or None: all), got {assess_tiles!r}")
        self.assess_tiles = None if assess_tiles is None else int(assess_tiles)  # per step (None: all); see spread()
        if max_megapixels is not None and not max_megapixels > 0:
            raise RarEdgeError(f"max_megapixels must be a positive number (or None: no limit), got {max_megapixels}")
        self.max_megapixels = max_megapixels  # images over it are refused before any work (memory grows with them)
        if profile is not None and profile.bundle:
            mine = {k: manifest.get(k) for k in ("preset", "precision", "target")}
            other = {k: v for k, v in profile.bundle.items() if k in mine and v != mine[k]}
            if other:  # another model's times would make every budget decision wrong
                raise RarEdgeError(f"the device profile was measured with another bundle ({other} against this "
                                   f"bundle's {mine}); measure this one: rar-edge profile --bundle {bundle} -o FILE")
        ran_on = list(getattr(backend, "providers", []))
        if profile is not None and profile.providers and ran_on and profile.providers[0] != ran_on[0]:
            # a GPU's times would let a CPU session overrun every budget (and a CPU's would skip a GPU's steps)
            raise RarEdgeError(f"the device profile was measured on {profile.providers[0]} and this bundle runs on "
                               f"{ran_on[0]}: pass the profile's --providers, or measure these: rar-edge profile "
                               f"--bundle {bundle} --providers ... -o FILE")
        self.profile = profile
        self.multiple = int(manifest["size_multiple"])
        if manifest["input_shape"]:
            self.fixed_tile: tuple[int, int] | None = tuple(manifest["input_shape"])
            if tile is not None and (tile, tile) != self.fixed_tile:
                raise RarEdgeError(f"this bundle has a fixed tile {self.fixed_tile[0]}x{self.fixed_tile[1]}: tile= "
                                   "applies to dynamic bundles (python -m rar_edge.export --dynamic)")
        else:
            side = DEFAULT_TILE if tile is None else tile
            if not self.multiple <= side <= MAX_TILE or side % self.multiple:
                raise RarEdgeError(f"tile must be a multiple of {self.multiple} from {self.multiple} to {MAX_TILE} "
                                   f"pixels, got {side} (leave it out for {DEFAULT_TILE})")
            self.fixed_tile = None
            self.dynamic_tile = side
        smallest = min(self.fixed_tile or (self.dynamic_tile, self.dynamic_tile))
        if overlap is not None and not 0 <= overlap < smallest // 2:
            raise RarEdgeError(f"overlap must be in [0, {smallest // 2}) pixels for a {smallest} tile, got {overlap}")
        self.overlap = overlap
        self.degradations = list(manifest["degradations"])
        loop = manifest["quality"]["defaults"]
        # Fields a bundle predates (min_change, keep, min_better, min_detect) take StopRule's defaults: off,
        # "best", off, off, the rule such bundles ran.
        self.rule = StopRule(**{f.name: loop[f.name] for f in fields(StopRule) if f.name in loop and f.name != "gate"},
                             gate=Gate.from_dict(manifest["quality"].get("gate")))  # None before learned gates
        self.judge = Judge.from_dict(manifest["quality"].get("judge"))  # None in bundles made before judges
        self.costs: dict[tuple[int, int], CostModel] = {}
        self._ms: dict[str, float] = {}
        self._cost: CostModel | None = None
        self._recording = True  # False during the first warm-up pass (first calls are not representative)
        self._grid_cost = StageCost(GRID_MARGIN)  # what the JPEG grid's report costs here (_stage)
        self._noise_cost = StageCost(NOISE_MARGIN)  # what the noise stage costs here (_stage)
        self._on_call: Callable[[], None] | None = None  # a restore's progress hook, once per backend call
        self.warming: threading.Thread | None = None  # the warm-up a cold budgeted call started in the background
        self._lock = threading.Lock()

    @classmethod
    def load(cls, bundle: str | Path | None = None, backend: str | None = None, profile: str | Path | DeviceProfile | None = None,
             tile: int | None = None, overlap: int | None = None, warmup: bool = True,
             max_megapixels: float | None = None, assess_tiles: int | None = None, half_latents: bool = False,
             tone_head: str | Path | None = None, **backend_options) -> "Restorer":
        """Verify the bundle (schema, SHA-256 of every artifact), open its backend, warm it up.

        ``bundle``: an exported bundle folder; None loads the shipped default (``DEFAULT_BUNDLE``).

        ``assess_tiles``: assess at most this many tiles per step, spread over the image, instead of all of
        them (None). The loop decides per image from the mean over the tiles assessed, so a sample decides
        nearly as all of them do, for a fraction of the assessor's time on large photos; the conditioning
        is that sample's mean too, so outputs differ slightly (BENCHMARKS.md, "Assessing a sample of tiles").

        ``half_latents``: keep every tile's latent in float16 between calls (each call still gets float32).
        The latents of a large photo are most of the runtime's memory (two steps of every tile); this halves
        them, at outputs about 56 dB from the float32 ones (BENCHMARKS.md, "Memory of a 12 MP photo").

        ``tone_head``: the exposure stage's head (a ``rar-edge train-tone`` folder) for ``restore(tone=True)``;
        None: the one the bundle carries (``tone/``, export/tone.py), or the shipped one for a bundle exported
        without (runtime/tone.py). A named one is checked here, so a bad folder fails before any photo.
        """
        bundle = DEFAULT_BUNDLE if bundle is None else Path(bundle)
        try:
            manifest = verify_bundle(bundle)
        except ValueError as e:
            raise RarEdgeError(str(e)) from None
        prof = load_profile(profile) if isinstance(profile, (str, Path)) else profile
        restorer = cls(bundle, manifest, open_backend(bundle, manifest, backend, **backend_options), prof, tile, overlap,
                       max_megapixels, assess_tiles, half_latents, tone_head)
        if warmup:
            restorer.warmup()
        return restorer

    # --- shapes ---
    def tile_for(self, height: int, width: int) -> tuple[int, int]:
        if self.fixed_tile:
            return self.fixed_tile
        m, side = self.multiple, self.dynamic_tile
        return (min(side, -(-height // m) * m), min(side, -(-width // m) * m))

    def overlap_for(self, tile: tuple[int, int]) -> int:
        return self.overlap if self.overlap is not None else min(32, min(tile) // 4)

    # --- timing ---
    def cost_model(self, tile: tuple[int, int]) -> CostModel:
        """The cost model of one tile size. A size not seen yet starts from the device profile or, without
        one, from the nearest size measured here, scaled by pixel count."""
        if tile not in self.costs:
            prof = self.profile.entry_ms(tile) if self.profile else None
            if prof is None and self.costs:
                near = min(self.costs, key=lambda t: abs(np.log(t[0] * t[1] / (tile[0] * tile[1]))))
                scale = tile[0] * tile[1] / (near[0] * near[1])
                prof = {e: self.costs[near].predict(e) * scale for e in ENTRY_POINTS}
            self.costs[tile] = CostModel(prof)
        return self.costs[tile]

    def call(self, entry: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
        t0 = time.perf_counter()
        out = self.backend.run(entry, inputs)
        ms = (time.perf_counter() - t0) * 1000.0
        self._ms[entry] = self._ms.get(entry, 0.0) + ms
        if self._cost is not None and self._recording:
            self._cost.record(entry, ms)
        if self._on_call is not None:
            self._on_call()
        return out

    def warmup(self, tile: tuple[int, int] | None = None) -> None:
        """Two restores of a tile-sized image with one forced step, through the same path as ``restore``:
        first calls are slow (not recorded), the second seeds the cost model, the runtime's overhead included;
        then the noise stage twice, the second to price it."""
        tile = tile or self.tile_for(*(self.fixed_tile or (self.dynamic_tile, self.dynamic_tile)))
        image = np.full((*tile, 3), 0.5, np.float32)
        rule = StopRule(**FORCED_STEP)  # one step, always decoded: every entry point runs
        with self._lock:
            self._recording = False
            try:
                self._restore(image, None, rule, time.perf_counter())
            finally:
                self._recording = True
            self._restore(image, None, rule, time.perf_counter())
            # a flat tile finds no noise: price the stage here, on at most 512² (a 4096² tile would take seconds;
            # the price is per megapixel), its first call unrecorded like the model's (the highest rate is kept)
            denoise_stage(image[:512, :512])
            self._stage(self._noise_cost, denoise_stage, image[:512, :512], None, time.perf_counter())

    def _warm_in_background(self, tile: tuple[int, int]) -> None:
        """After a cold budgeted call (held lock): measure this tile size in a thread, once, so that later budgeted
        calls can run the model. It takes the lock when this call returns; a call arriving meanwhile waits for
        it (its wait counts against its budget: ``ms["wait"]``, ``waited_out``)."""
        if self.warming is None or not self.warming.is_alive() and not self.cost_model(tile).known():
            self.warming = threading.Thread(target=self.warmup, args=(tile,), name="rar-edge-warmup", daemon=True)
            self.warming.start()

    # --- the API ---
    def restore(self, image: Any, budget_ms: float | None = None, max_steps: int | None = None,
                target_quality: float | None = None, min_gain: float | None = None,
                min_change: float | None = None, keep: str | None = None,
                min_better: float | None = None, min_detect: float | None = None,
                progress: Callable[[int, int], None] | None = None, tone: bool = False,
                denoise: bool = True) -> RestoreResult:
        """Restore one image (numpy array or PIL image); see RestoreResult. The stop rule's fields
        default to the bundle's (its manifest); any of them can be overridden per call (``min_better=0``
        turns the bundle's judge off, ``min_detect=0`` its clean gate). ``progress(done, total)`` is called
        after every model call (a tile's encode, assess, restore or decode) with the calls so far and the most
        the loop can make (it may stop sooner), and once more with ``done == total`` at the end: a 12 MP photo
        is hundreds of calls.

        ``tone=True`` runs the exposure stage first (runtime/tone.py): where its head finds the photo
        under-exposed, a global tone curve brightens it before the loop (``result.tone`` says whether and why).
        Opt-in: it cannot tell an under-exposed photo from a dark scene, and brightens both.

        Where the assessor finds noise in the input (``present``), the noise stage (runtime/denoise.py) runs on the
        image the loop returns (``result.denoised``); under a budget only where the time left pays for it.
        ``denoise=False`` turns it off."""
        if not isinstance(denoise, bool):
            raise RarEdgeError(f"denoise must be True or False, got {denoise!r}")
        if budget_ms is not None and not (is_number(budget_ms) and 0 < budget_ms < MAX_BUDGET_MS):
            raise RarEdgeError(f"budget_ms must be a positive number of milliseconds below {MAX_BUDGET_MS:g} "
                               f"(None: no budget), got {budget_ms!r}")
        if progress is not None and not callable(progress):
            raise RarEdgeError(f"progress must be a function progress(done, total), got {type(progress).__name__}")
        overrides = dict(max_steps=max_steps, target_quality=target_quality, min_gain=min_gain,
                         min_change=min_change, keep=keep, min_better=min_better, min_detect=min_detect)
        try:
            rule = replace(self.rule, **{k: v for k, v in overrides.items() if v is not None})
        except ValueError as e:
            raise RarEdgeError(str(e)) from None
        entered = time.perf_counter()  # the budget counts from here: the wait for the lock is the caller's time too
        self._check_size(image)
        if not isinstance(image, np.ndarray) and hasattr(image, "load"):
            image.load()  # a lazily opened PIL file decodes now, not inside a waited-out copy (wait_reserve_ms)
        # Under a budget, wait for another thread's restore no longer than the budget lasts: past it the
        # answer can only be the input, and waiting on would overrun by the rest of that restore.
        # It stops waiting wait_reserve_ms early: the wake-up comes late by a fraction of a millisecond, and
        # handing back a copy of the input takes time too (bench/budget_sequence.py saw a 2000.1 ms wait).
        timeout = -1 if budget_ms is None else max(0.0, (budget_ms - wait_reserve_ms(image)) / 1000.0
                                                     - (time.perf_counter() - entered))
        if not self._lock.acquire(timeout=timeout):
            return self._waited_out(image, budget_ms, entered)
        try:
            return self._restore(image, budget_ms, rule, entered, progress, tone, denoise)
        finally:
            self._lock.release()

    def _stage(self, cost: StageCost, run: Callable[[np.ndarray], Any], rgb: np.ndarray, budget_ms: float | None,
               entered: float) -> tuple[Any, float]:
        """(``run(rgb)``, its ms) for a stage after the loop (the JPEG grid's report, the noise stage), or (None, 0.0)
        where a budget's time left does not pay for it (``cost.affordable``: never until an unbudgeted call or
        warmup() has measured it), so that no such stage breaks the budget."""
        h, w = rgb.shape[:2]
        if budget_ms is not None and not cost.affordable(h, w, budget_ms - (time.perf_counter() - entered) * 1000.0):
            return None, 0.0
        t = time.perf_counter()
        out = run(rgb)
        ms = max((time.perf_counter() - t) * 1000.0, 1e-6)  # > 0: it ran
        cost.record(h, w, ms)
        return out, ms

    def _waited_out(self, image: Any, budget_ms: float, entered: float) -> RestoreResult:
        """The input as given (a copy), when the wait for the model alone used up the budget."""
        waited = (time.perf_counter() - entered) * 1000.0
        copy = image.copy()
        total = (time.perf_counter() - entered) * 1000.0  # the copy is the caller's time too
        return RestoreResult(image=copy, steps=0, steps_run=0, quality=[], degradations={},
                             stop_reason="budget", ms={e: 0.0 for e in ENTRY_POINTS} | {
                                 OVERHEAD: 0.0, "jpeg_grid": 0.0, "denoise": 0.0, "wait": waited, "total": total},
                             budget_ms=budget_ms, budget_bound=True, model_skipped=True, waited_out=True, tiles=0)

    def _check_size(self, image: Any) -> None:
        """Refuse an array or PIL image over ``max_megapixels`` before any work."""
        if isinstance(image, np.ndarray) and image.ndim >= 2:
            check_megapixels(image.shape[0], image.shape[1], self.max_megapixels)
        elif hasattr(image, "height") and hasattr(image, "width"):  # a PIL image
            check_megapixels(image.height, image.width, self.max_megapixels)

    def assess(self, image: Any, threshold: float = FOUND_AT, per_tile: bool = False,
               tone: bool = False) -> Assessment:
        """The assessor alone: encode and assess every tile of ``image`` (numpy array or PIL image), no restore.

        ``quality`` is the predicted PSNR against the clean original (docs/runtime.md says how far to trust
        it), ``present`` the degradations with a probability of at least ``threshold``, and "jpeg" also where
        JPEG's 8×8 block grid is found that surely (``jpeg_grid``: runtime/jpeg_grid.py; the assessor takes
        strong JPEG for clean, the grid does not); ``tone=True`` also asks the exposure stage's head whether
        ``restore(tone=True)`` would brighten the image (``.tone``).
        """
        if not (is_number(threshold) and 0 < threshold < 1):
            raise RarEdgeError(f"threshold must be a probability in (0, 1), got {threshold!r}")
        self._check_size(image)
        with self._lock:
            t0 = time.perf_counter()
            rgb = as_rgb(image)[0]
            decision = self.tone_curve().decide(rgb) if tone else None
            job = _TiledImage(self, rgb)
            job.assessed = list(range(len(job.tiles)))  # every tile: the answer is the point here
            self._cost = None  # not a restore: nothing recorded into the cost models
            tiles: list[float] = []
            quality, probs, _ = job.assess(job.encode(), tiles)
        names = dict(zip(self.degradations, probs))
        jpeg_p = grid_probability(rgb)
        found = present(names, threshold, jpeg_p)
        return Assessment(quality, names, found, threshold, len(job.tiles), (time.perf_counter() - t0) * 1000.0,
                          tiles if per_tile else None, decision, jpeg_p)

    def tone_curve(self) -> ToneCurve:
        """The exposure stage's head (loaded on first use): the one named at load, else the bundle's own
        (exported bundles carry one: export/tone.py), else the shipped one."""
        if self._tone is None:
            own = self.manifest.get("tone")
            self._tone = ToneCurve.load(self.tone_head if self.tone_head is not None
                                        else self.bundle / own["head"] if own else None)
        return self._tone

    def _restore(self, image: Any, budget_ms: float | None, rule: StopRule, entered: float,
                 progress: Callable[[int, int], None] | None = None, tone: bool = False,
                 denoise: bool = True) -> RestoreResult:
        t0 = time.perf_counter()
        wait_ms = (t0 - entered) * 1000.0
        rgb, alpha, kind = as_rgb(image)
        given = rgb  # the JPEG grid reads the photo as given, not as toned
        decision = None
        if tone:  # one curve for the whole photo, before the tiles; it runs whatever the budget (docs/runtime.md)
            rgb, decision = self.tone_curve()(rgb)
        tone_ms = decision.ms if decision is not None else 0.0
        job = _TiledImage(self, rgb)
        cost = self._cost = self.cost_model(job.tile)
        n = len(job.tiles)
        self._ms = {}
        most = sum(job.calls(e) * k for e, k in (("encode", 1), ("assess", 1 + rule.max_steps),
                                                   ("restore", rule.max_steps), ("decode", 1)))
        calls = [0]
        if progress is not None:
            def tick() -> None:
                calls[0] += 1
                progress(min(calls[0], most), most)
            self._on_call = tick
        cold = budget_ms is not None and not cost.known()
        try:
            if cold:  # nothing measured, no profile: a budgeted call cannot know what a step costs, so it takes none
                outcome = LoopOutcome(image=None, stop_reason="budget", model_skipped=True)
                self._warm_in_background(job.tile)
            else:
                outcome = adaptive_loop(job, rule, budget_ms, lambda e: cost.predict(e) * job.calls(e),
                                        start=entered, judge=self.judge)
        finally:
            self._on_call = None
        if progress is not None:
            progress(most, most)
        probabilities = dict(zip(self.degradations, outcome.probabilities))
        kept = None if outcome.image is None else outcome.image[:rgb.shape[0], :rgb.shape[1]]
        noise_ms, skipped = 0.0, False
        if denoise and not outcome.model_skipped and wants_noise_stage(probabilities, *rgb.shape[:2]):
            # the input's pixels where no step was kept: converted inside the stage, so only where it runs
            out, noise_ms = self._stage(self._noise_cost, lambda x: denoise_stage(unit_float(x)),
                                        rgb if kept is None else kept, budget_ms, entered)
            kept, skipped = (kept, True) if out is None else (out, False)
        if kept is None and decision is not None and decision.applied:
            result_image = give_back(rgb, alpha, kind)  # no step kept: the toned photo (the stage's own buffer)
        elif kept is None:  # pass-through: the caller's image exactly as given (a copy: never aliased)
            result_image = image.copy()
        else:
            result_image = give_back(kept, alpha, kind)
        jpeg_p, grid_ms = self._stage(self._grid_cost, grid_probability, given, budget_ms, entered)  # a report
        done = time.perf_counter()
        total, work = (done - entered) * 1000.0, (done - t0) * 1000.0
        overhead = max(0.0, work - tone_ms - grid_ms - noise_ms - sum(self._ms.values()))
        if self._recording:
            # Per tile and pass: a large photo's tiling does not make a small one's prediction, and a skipped
            # call still records (what it cost says the model may fit again).
            cost.record(OVERHEAD, overhead_per_pass(overhead, n, outcome.steps_run))
        ms = {e: self._ms.get(e, 0.0) for e in ENTRY_POINTS} | {OVERHEAD: overhead, "jpeg_grid": grid_ms,
                                                                  "denoise": noise_ms, "wait": wait_ms, "total": total}
        if decision is not None:
            ms["tone"] = tone_ms
        return RestoreResult(image=result_image, steps=outcome.steps, steps_run=outcome.steps_run,
                             quality=outcome.qualities, degradations=probabilities,
                             stop_reason=outcome.stop_reason, ms=ms, budget_ms=budget_ms,
                             budget_bound=outcome.stop_reason == "budget", model_skipped=outcome.model_skipped,
                             waited_out=budget_ms is not None and wait_ms >= budget_ms,
                             cost_unknown=cold, tiles=n, alpha=alpha, tone=decision, jpeg_grid=jpeg_p,
                             needed_ms=outcome.needed_ms, denoised=noise_ms > 0.0, denoise_skipped=skipped)
