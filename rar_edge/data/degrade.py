"""Degradation synthesis: batched torch (CPU or CUDA), reproducible from a seed.

A *synthesis* names, per type, the models that may produce it (``SYNTHESES``). For every image
and every applied type one model is drawn at random; each maps a severity ``s`` in [0, 1] onto its
own parameter range and draws its other parameters widely (docs/degradations.md has one table per
type). ``"v2"`` (the default) has several physical models per type; ``"v3"`` adds photometric ones
(a dark tone curve for low light, rain under an overcast sky); ``"v1"`` is the single model per type
that previews 1-6 trained on, kept for comparisons. Composites of 2-3 types are applied
in physical order: the scene's atmosphere (haze, rain), the optics (blur), the sensor (low light's
exposure, noise), the codec (JPEG).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from rar_edge import DEFAULT_SYNTHESIS, DEGRADATIONS, SYNTHESES as SYNTHESIS_NAMES

from .synth import blur, haze, jpeg, legacy, low_light, noise, rain

Model = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

#: Per synthesis, per type: the models one is drawn from (uniformly), by name.
SYNTHESES: dict[str, dict[str, dict[str, Model]]] = {
    "v1": {"noise": {"v1": legacy.noise}, "blur": {"v1": legacy.blur}, "jpeg": {"v1": legacy.jpeg},
           "rain": {"v1": legacy.rain}, "haze": {"v1": legacy.haze}, "low_light": {"v1": legacy.low_light}},
    "v2": {"noise": noise.MODELS, "blur": blur.MODELS, "jpeg": jpeg.MODELS,
           "rain": rain.MODELS, "haze": haze.MODELS, "low_light": low_light.MODELS},
    "v3": {"noise": noise.MODELS, "blur": blur.MODELS, "jpeg": jpeg.MODELS,
           "rain": rain.MODELS_V3, "haze": haze.MODELS, "low_light": low_light.MODELS_V3},
}
assert tuple(SYNTHESES) == SYNTHESIS_NAMES, "rar_edge.SYNTHESES names the syntheses for torch-free callers"

#: Application order for composites (atmosphere -> optics -> sensor -> codec).
APPLY_ORDER: tuple[str, ...] = ("haze", "rain", "blur", "low_light", "noise", "jpeg")


@dataclass
class DegradedBatch:
    """A degraded batch with its ground truth."""

    degraded: torch.Tensor  # (N,3,H,W) in [0,1]
    clean: torch.Tensor  # (N,3,H,W) in [0,1]
    labels: torch.Tensor  # (N,D) float 0/1, in DEGRADATIONS order
    severity: torch.Tensor  # (N,D) in [0,1]; 0 where the type is absent
    params: torch.Tensor  # (N,D) physical parameter of each applied type (its model's units); 0 where absent
    models: torch.Tensor  # (N,D) long: index into ``menu[type]`` of the model used; -1 where absent
    synthesis: str = DEFAULT_SYNTHESIS
    menu: dict[str, tuple[str, ...]] | None = None  # per type, the model names ``models`` indexes

    def model_name(self, i: int, name: str) -> str | None:
        """The model that made type ``name`` in image ``i`` (None where the type is absent)."""
        k = int(self.models[i, DEGRADATIONS.index(name)])
        return self.menu[name][k] if k >= 0 and self.menu else None


def check_synthesis(synthesis: str) -> dict[str, dict[str, Model]]:
    """The models of ``synthesis``, or a one-line error naming the known ones."""
    if synthesis not in SYNTHESES:
        from rar_edge.errors import RarEdgeError

        raise RarEdgeError(f"unknown synthesis {synthesis!r}; choose one of {', '.join(SYNTHESES)}")
    return SYNTHESES[synthesis]


def model_names(synthesis: str, name: str) -> tuple[str, ...]:
    """The model names of one type in a synthesis, in the order ``DegradedBatch.models`` indexes."""
    return tuple(check_synthesis(synthesis)[name])


def sample_specs(
    n: int, gen: torch.Generator, p_clean: float = 0.1, p_composite: float = 0.35,
    types: tuple[str, ...] = DEGRADATIONS, type_weights: dict[str, float] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random labels (N,D) and severities (N,D): clean, one type, or a composite of 2-3 types.

    ``type_weights`` (name -> relative weight, 1 for a name left out) draws some types more often, alone
    and in composites; without it every type is equally likely (and the draws are those of earlier runs).
    """
    d = len(DEGRADATIONS)
    labels = torch.zeros(n, d)
    allowed = [DEGRADATIONS.index(t) for t in types]
    weights = None
    if type_weights:
        weights = torch.tensor([float(type_weights.get(t, 1.0)) for t in types])
        if (weights <= 0).any():
            raise ValueError(f"type weights must be positive: {type_weights}")
    cpu = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device)))
    for i in range(n):
        u = float(torch.rand(1, generator=cpu))
        if u < p_clean:
            continue
        k = 1
        if u > 1 - p_composite and len(allowed) > 1:
            k = 2 + int(torch.randint(0, 2, (1,), generator=cpu)) if len(allowed) > 2 else 2
        if weights is None:
            pick = torch.randperm(len(allowed), generator=cpu)[:k]
        else:
            pick = torch.multinomial(weights, k, replacement=False, generator=cpu)
        labels[i, [allowed[j] for j in pick]] = 1
    severity = torch.rand(n, d, generator=cpu) * labels
    return labels, severity


def apply_degradations(clean: torch.Tensor, labels: torch.Tensor, severity: torch.Tensor, gen: torch.Generator,
                       synthesis: str = DEFAULT_SYNTHESIS, models: torch.Tensor | None = None) -> DegradedBatch:
    """Degrade ``clean`` (N,3,H,W in [0,1]) by ``labels``/``severity`` in APPLY_ORDER; clamps to [0,1].

    ``models`` (N,D) picks each image's model per type (an index into ``model_names``; -1 or absent:
    drawn at random from ``gen``).
    """
    menu = check_synthesis(synthesis)
    labels = labels.to(clean.device)
    severity = severity.to(clean.device)
    x = clean.clone()
    params = torch.zeros_like(severity)
    chosen = torch.full(labels.shape, -1, dtype=torch.long)
    for name in APPLY_ORDER:
        j = DEGRADATIONS.index(name)
        idx = torch.nonzero(labels[:, j] > 0).flatten()
        if idx.numel() == 0:
            continue
        fns = list(menu[name].values())
        pick = torch.randint(0, len(fns), (idx.numel(),), generator=gen, device=gen.device).cpu() \
            if len(fns) > 1 else torch.zeros(idx.numel(), dtype=torch.long)
        if models is not None:
            given = models[idx.cpu(), j].cpu()
            pick = torch.where(given >= 0, given, pick)
        chosen[idx.cpu(), j] = pick
        for k, fn in enumerate(fns):
            sub = idx[(pick == k).to(idx.device)]
            if sub.numel() == 0:
                continue
            y, p = fn(x[sub], severity[sub, j], gen)
            # Each stage sees a displayable image: clamp between stages, as a camera pipeline would.
            x[sub] = y.clamp(0, 1)
            params[sub, j] = p.to(params.dtype)
    return DegradedBatch(x, clean, labels, severity, params, chosen, synthesis,
                         {name: tuple(models) for name, models in menu.items()})


def degrade(clean: torch.Tensor, seed: int, synthesis: str = DEFAULT_SYNTHESIS, **sample_kwargs) -> DegradedBatch:
    """Sample and apply degradations to a batch; the same seed (on the same device) gives the same output."""
    gen = torch.Generator(device=clean.device).manual_seed(seed)
    labels, severity = sample_specs(clean.shape[0], gen, **sample_kwargs)
    return apply_degradations(clean, labels, severity, gen, synthesis)
