"""The RAR module: four entry points and the reference restore–assess loop."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from rar_edge.loop import LoopTrace, StopRule, assessment_vector

from .assessor import Assessor
from .autoencoder import Decoder, Encoder, init_linear_path
from .config import RARConfig
from .restorer import Restorer

ENTRY_POINTS: tuple[str, ...] = ("encode", "assess", "restore", "decode")


@dataclass
class LoopResult:
    """What the loop did for one image."""

    image: torch.Tensor  # (3,H,W), clamped to [0,1]
    steps: int  # restore steps applied to the returned latent
    steps_run: int  # restore steps taken (>= steps; a step refused as too small is not counted)
    quality: list[float]  # one per assessment: the input's, then after each step
    degradations: dict[str, float]  # probabilities of the input's assessment
    stop_reason: str


def step_change(z: torch.Tensor, z_next: torch.Tensor) -> torch.Tensor:
    """Relative size of a restore step per image, |z_next - z| / |z| (N,): StopRule.min_change's measure."""
    return (z_next - z).flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1).clamp_min(1e-12)


class RAR(nn.Module):
    """Autoencoder + assessor + restorer, with the four exported entry points."""

    def __init__(self, config: RARConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = Encoder(c.latent_channels, c.ae_width, c.ae_depth, c.stride, c.ae_block)
        self.decoder = Decoder(c.latent_channels, c.ae_width, c.ae_depth, c.stride, c.ae_block)
        init_linear_path(self.encoder.skip, self.decoder.skip, [self.encoder.head, self.decoder.head])
        self.assessor = Assessor(c.latent_channels, c.assess_width, c.assess_depth, c.cond_dim, len(c.degradations),
                                 c.assess_detail, c.assess_grid, c.assess_block)
        self.restorer = Restorer(c.latent_channels, c.restore_width, c.restore_depths, c.cond_dim, c.global_rank,
                                 c.restore_block)

    # --- the four entry points (each exported alone) ---
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image (N,3,H,W) float in [0,1], H and W multiples of ``config.size_multiple`` -> latent."""
        return self.encoder(image)

    def assess(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent -> (quality (N,) dB, degradation probabilities (N,D), conditioning (N,E))."""
        quality, logits, cond = self.assessor(z)
        return quality[:, 0], torch.sigmoid(logits), cond

    def restore(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """One restoration step in latent space."""
        return self.restorer(z, cond)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent -> image (N,3,H,W), not clamped."""
        return self.decoder(z)

    def stop_rule(self, **overrides) -> StopRule:
        """The config's stop rule, with any non-None override applied."""
        kw = {f.name: getattr(self.config, f.name) for f in fields(StopRule)}  # the config holds every field
        kw["gate"] = self.config.gate_head  # stored as numbers
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return StopRule(**kw)

    @torch.no_grad()
    def restore_loop(self, image: torch.Tensor, rule: StopRule | None = None) -> list[LoopResult]:
        """Run the adaptive loop on a batch; each image stops on its own (see rar_edge.loop).

        Encode once, assess, step while the rule allows, decode the latent the rule keeps once; an
        image the rule keeps at step 0 is returned unchanged (clamped to [0, 1]) without a decode.
        """
        rule = rule or self.stop_rule()
        z = self.encode(image)
        quality, probs, cond = self.assess(z)
        n = image.shape[0]
        judge = self.config.judge_head

        def vectors(q: torch.Tensor, p: torch.Tensor, c: torch.Tensor) -> list[list[float] | None]:
            """What the judge reads per image (None when the rule does not ask it)."""
            if judge is None or rule.min_better <= 0:
                return [None] * n
            return [assessment_vector(q[i], p[i].tolist(), c[i].tolist()) for i in range(n)]

        traces = [LoopTrace(rule, float(q), judge, v, p.tolist())  # the stop sequence: rar_edge.loop
                  for q, v, p in zip(quality, vectors(quality, probs, cond), probs)]
        # latents[k][i] is image i after its k-th step: an image steps on every iteration until it stops.
        latents = [z]
        while any(t.running for t in traces):
            z_next = self.restore(z, cond)
            change = step_change(z, z_next) if traces[0].needs_change() else None
            active = [t.running and t.propose(None if change is None else float(change[i]))
                      for i, t in enumerate(traces)]
            if not any(active):
                break
            mask = torch.tensor(active, device=z.device)
            z = torch.where(mask[:, None, None, None], z_next, z)
            latents.append(z)
            q_new, p_new, cond_new = self.assess(z)
            cond = torch.where(mask[:, None], cond_new, cond)
            v_new = vectors(q_new, p_new, cond_new)
            for i, t in enumerate(traces):
                if active[i]:
                    t.taken(float(q_new[i]), v_new[i])
        kept = [t.kept for t in traces]
        # An image that keeps step 0 comes back as it came in (rar_edge.loop, pass-through): no decode.
        out = image.clamp(0, 1)  # a new tensor: filling it leaves the caller's image alone
        stepped = [i for i, k in enumerate(kept) if k > 0]
        if stepped:
            out[stepped] = self.decode(torch.stack([latents[kept[i]][i] for i in stepped])).clamp(0, 1).to(out.dtype)
        names = self.config.degradations
        return [
            LoopResult(
                image=out[i],
                steps=kept[i],
                steps_run=traces[i].steps_run,
                quality=traces[i].qualities,
                degradations={name: float(probs[i, j]) for j, name in enumerate(names)},
                stop_reason=str(traces[i].reason),
            )
            for i in range(n)
        ]
