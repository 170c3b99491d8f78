"""The stop rule of RAR's restore–assess loop, in plain Python.

Torch-free on purpose: the torch reference loop (``rar_edge.model.rar``) and the on-device
runtime apply the same rule, so both stop at the same step for the same assessments.
"""

from __future__ import annotations

from dataclasses import dataclass

#: What the assessor's quality score means; written into checkpoints and manifests.
QUALITY_MEANING = (
    "predicted PSNR in dB of the decoded image against the clean original "
    "(training targets are capped at 40 dB: above that an image counts as clean)"
)
QUALITY_CAP_DB = 40.0


@dataclass(frozen=True)
class StopRule:
    """When the loop stops stepping.

    Attributes:
        max_steps: the most restore steps the loop may run.
        target_quality: stop once the assessed quality (dB) reaches this.
        min_gain: stop once a step's assessed gain (dB) falls below this.
    """

    max_steps: int = 4
    target_quality: float = 38.0
    min_gain: float = 0.1

    def __post_init__(self) -> None:
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0, got {self.max_steps}")

    def reason_to_stop(self, qualities: list[float]) -> str | None:
        """Why to stop before another step, given the qualities assessed so far (None: step on).

        ``qualities[0]`` is the input's assessment, ``qualities[k]`` the assessment after step k.
        """
        steps_done = len(qualities) - 1
        if qualities[-1] >= self.target_quality:
            return "target"
        if steps_done >= 1 and qualities[-1] - qualities[-2] < self.min_gain:
            return "no_gain"
        if steps_done >= self.max_steps:
            return "max_steps"
        return None

    @staticmethod
    def best_index(qualities: list[float]) -> int:
        """Index of the best-assessed latent (the earliest one on ties): the loop returns it."""
        return max(range(len(qualities)), key=lambda i: (qualities[i], -i))
