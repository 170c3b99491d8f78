"""The model's configuration: everything needed to rebuild a RAR model from a checkpoint's JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from rar_edge import DEGRADATIONS
from rar_edge.loop import Gate, Judge, StopRule


#: The block-kind fields (blocks.BLOCKS names) and the parts built of each one's blocks.
BLOCK_PARTS: dict[str, tuple[str, ...]] = {"ae_block": ("encoder", "decoder"), "assess_block": ("assessor",),
                                           "restore_block": ("restorer",)}
BLOCK_FIELDS: tuple[str, ...] = tuple(BLOCK_PARTS)
#: The fields that are the loop's (its stop rule, rar_edge.loop.StopRule, with its fitted judge and gate), not
#: the architecture: a model's weights fit any values of them.
LOOP_FIELDS: frozenset[str] = frozenset({f.name for f in fields(StopRule)} | {"judge"})


@dataclass(frozen=True)
class RARConfig:
    """Sizes of the four parts, and the loop's default stop rule."""

    latent_channels: int = 32
    stride: int = 4
    ae_width: int = 32
    ae_depth: int = 1
    #: The codec's block kind (blocks.BLOCKS), as ``restore_block`` for the restorer.
    ae_block: str = "naf"
    assess_width: int = 16
    assess_depth: int = 1
    #: The assessor trunk's block kind (blocks.BLOCKS).
    assess_block: str = "naf"
    #: Fixed detail statistics in the assessor (Assessor docstring); False in checkpoints made before them.
    assess_detail: bool = False
    #: The detail statistics' grid contrast (JPEG's blocks; DetailStats); False in checkpoints made before it.
    assess_grid: bool = False
    restore_width: int = 32
    restore_depths: tuple[int, int, int] = (1, 1, 2)
    #: The restorer's block kind (blocks.BLOCKS): "naf", or "conv" (dense convolutions, fast in int8).
    restore_block: str = "naf"
    #: Rank of the restorer's global path (restorer.GlobalStep); 0 (none) in checkpoints made before it.
    global_rank: int = 0
    cond_dim: int = 32
    degradations: tuple[str, ...] = field(default=DEGRADATIONS)
    # Loop defaults (see rar_edge.loop.StopRule).
    max_steps: int = 4
    target_quality: float = 38.0
    min_gain: float = 0.1
    min_change: float = 0.0
    keep: str = "best"
    min_better: float = 0.0
    min_detect: float = 0.0
    #: The loop's judge (rar_edge.loop.Judge): its weights, then its bias; empty when none was fitted.
    judge: tuple[float, ...] = ()
    #: The clean gate's detector (rar_edge.loop.Gate): its weights, then its bias; empty when none was fitted.
    gate: tuple[float, ...] = ()

    @property
    def judge_head(self) -> Judge | None:
        """The fitted judge, or None."""
        return Judge.from_flat(self.judge)

    @property
    def gate_head(self) -> Gate | None:
        """The fitted clean gate, or None (the gate then reads the largest degradation probability)."""
        return Gate.from_flat(self.gate)

    @property
    def size_multiple(self) -> int:
        """Image height and width must be multiples of this (latent stride x restorer's 2 downsamplings)."""
        return self.stride * 4

    def to_dict(self) -> dict:
        d = asdict(self)
        d["restore_depths"] = list(self.restore_depths)
        d["degradations"] = list(self.degradations)
        d["judge"] = list(self.judge)
        if self.gate:  # left out when empty: JSON stays readable by versions before learned gates
            d["gate"] = list(self.gate)
        else:
            del d["gate"]
        for name in BLOCK_FIELDS:  # "naf", the default, is left out: NAF models' JSON stays readable by versions
            if d[name] == "naf":  # before these fields
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RARConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        d = dict(d)
        if "restore_depths" in d:
            d["restore_depths"] = tuple(d["restore_depths"])
        if "degradations" in d:
            d["degradations"] = tuple(d["degradations"])
        for head in ("judge", "gate"):
            if head in d:
                d[head] = tuple(float(x) for x in d[head])
        return cls(**d)
