"""RAR's training objective (DESIGN.md, "Training is end to end").

One module whose ``forward`` returns the losses, so DDP can wrap it. What learns from what:
- encoder and decoder learn from reconstruction only (clean and degraded images): letting the
  decoder learn from the restore losses makes it do the restoring and wrecks the autoencoder;
- the restorer learns flow-style: from any latent on the straight path encode(degraded) ->
  encode(clean), one step should land on the clean end; and through an unrolled loop, every
  decoded step should approach the clean image and improve on the step before (the step loss);
- the assessor's trunk learns the true PSNR of every latent it reads (computed here, never at
  inference) and which degradations the input has; its embedding head alone learns from the
  restore losses (an adapter on an IQA model, as in RAR).
Restore losses are normalised per sample by that sample's input error, so mild and severe
degradations weigh alike and the restorer cannot hide at identity. With ``restore_loss="log"`` each
sample's normalised error enters through its logarithm (a PSNR loss, floored at ``LOG_FLOOR``): a
sample's gradient then scales with 1 / its error, so types already improved (noise) keep pulling instead
of fading against the types whose error stays near their input's (blur, JPEG).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rar_edge import RESTORE_LOSSES
from rar_edge.loop import QUALITY_CAP_DB
from rar_edge.model import RAR
from rar_edge.model.assessor import Assessor

_EPS_MSE = 1e-3  # ~30 dB: keeps the normaliser finite on clean inputs
_EPS_FFT = 0.03  # fft_distance of an error of ~30 dB (the spectrum's mean magnitude is ~0.9 x the RMS error)
#: Added to the normalised error before the log. A sample's gradient weight is 1 / (err + LOG_FLOOR): about
#: 0.9 at its input's error, at most 10, so clean crops (error ~0) cannot take over the batch.
LOG_FLOOR = 0.1


@dataclass(frozen=True)
class LossWeights:
    autoencoder: float = 1.0
    restore: float = 1.0
    flow: float = 1.0
    step: float = 0.5
    quality: float = 0.1
    degradation: float = 0.5
    #: Spectral term of each sample's restore error (fft_distance); 0: off (rar-edge train --fft-weight).
    fft: float = 0.0


def per_sample_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def fft_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample mean magnitude of the orthonormal 2-D spectrum of ``a - b`` (N,).

    Why a spectral term: pixel MSE weighs an error by its energy, and the fine detail blur and JPEG remove
    holds little energy; every frequency counts alike here (after MIMO-UNet's FFT loss, on the magnitude).
    """
    return torch.fft.rfft2(a.float() - b.float(), norm="ortho").abs().flatten(1).mean(1)


def psnr_db(img: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR (dB) of ``img`` clamped to [0,1] against ``ref``, capped at QUALITY_CAP_DB."""
    mse = per_sample_mse(img.clamp(0, 1), ref)
    return (10 * torch.log10(1.0 / mse.clamp(min=1e-10))).clamp(max=QUALITY_CAP_DB)


class RARObjective(nn.Module):
    """Wraps a RAR model; ``forward`` computes every training loss for one batch."""

    def __init__(self, model: RAR, weights: LossWeights = LossWeights(), unroll: int = 3,
                 restore_loss: str = "ratio") -> None:
        super().__init__()
        if restore_loss not in RESTORE_LOSSES:
            raise ValueError(f"restore_loss must be one of {RESTORE_LOSSES}, got {restore_loss!r}")
        self.model = model
        self.weights = weights
        self.unroll = unroll
        self.restore_loss = restore_loss

    def assess(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(quality (N,), degradation logits, embedding), the trunk shielded from the restore losses.

        A float RAR's assessor shields its trunk itself (Assessor.forward); a quantization-aware
        student only has the ``assess`` entry point, whose probabilities are turned back into logits.
        """
        assessor = self.model.assessor
        if isinstance(assessor, Assessor):
            quality, logits, cond = assessor(z, shield_cond=True)
            return quality[:, 0], logits, cond
        quality, probs, cond = self.model.assess(z)
        return quality, torch.logit(probs, eps=1e-6), cond

    def frozen_decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode with the decoder's weights detached: gradients reach ``z`` but not the decoder."""
        params = {k: v.detach() for k, v in self.model.decoder.named_parameters()}
        return torch.func.functional_call(self.model.decoder, params, (z,))

    def forward(self, degraded: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor, t: torch.Tensor,
                return_aux: bool = False):
        """The losses of one batch; with ``return_aux``, also the tensors distillation matches against."""
        m, w = self.model, self.weights
        n = clean.shape[0]

        # Autoencoder: reconstruct clean and degraded images.
        both = torch.cat([clean, degraded])
        z_both = m.encoder(both)
        recon = m.decoder(z_both)
        loss_ae = F.l1_loss(recon.float(), both.float()) + F.mse_loss(recon.float(), both.float())
        z_clean, z_deg = z_both.detach().chunk(2)

        in_err = per_sample_mse(degraded, clean) + _EPS_MSE
        in_fft = fft_distance(degraded, clean) + _EPS_FFT if w.fft else None

        def restore_error(img: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            """Per-sample error normalised by the input's: pixel MSE + a little L1 + latent MSE."""
            pix = per_sample_mse(img, clean) + 0.1 * (img.float() - clean.float()).abs().flatten(1).mean(1)
            lat = per_sample_mse(z, z_clean) / (per_sample_mse(z_deg, z_clean) + _EPS_MSE)
            err = pix / in_err + 0.5 * lat
            if in_fft is not None:
                err = err + w.fft * fft_distance(img, clean) / in_fft
            return torch.log(err + LOG_FLOOR) if self.restore_loss == "log" else err

        # Every latent the assessor reads, with the true quality of its decode as the target.
        assessed_z: list[torch.Tensor] = []
        assessed_q: list[torch.Tensor] = []

        # Flow: one step from a random point on the straight path should reach the clean end.
        z_t = (1 - t[:, None, None, None]) * z_deg + t[:, None, None, None] * z_clean
        q_t, _, cond_t = self.assess(z_t)
        z_flow = m.restorer(z_t, cond_t)
        loss_flow = restore_error(self.frozen_decode(z_flow), z_flow).mean()
        assessed_z.append(z_t)
        assessed_q.append(q_t)

        # Unrolled loop from the degraded latent, as at inference.
        q0, logits, cond = self.assess(z_deg)
        cond0 = cond
        assessed_z.append(z_deg)
        assessed_q.append(q0)
        z = z_deg
        with torch.no_grad():
            prev_err = per_sample_mse(self.frozen_decode(z_deg), clean)
        step_losses, hinge, step_images = [], [], []
        for _ in range(self.unroll):
            z = m.restorer(z, cond)
            img = self.frozen_decode(z)
            step_images.append(img)
            step_losses.append(restore_error(img, z))
            err = per_sample_mse(img, clean)
            hinge.append(F.relu(err - prev_err) / in_err)
            prev_err = err
            # The assessor reads a detached latent: the restorer must not learn to please it.
            q, _, cond = self.assess(z.detach())
            assessed_z.append(z.detach())
            assessed_q.append(q)
        loss_restore = torch.stack(step_losses).mean()
        loss_step = torch.stack(hinge).mean()

        # Clean latents: quality near the autoencoder's ceiling, no degradation.
        q_clean, logits_clean, _ = self.assess(z_clean)
        assessed_z.append(z_clean)
        assessed_q.append(q_clean)
        with torch.no_grad():
            target_q = psnr_db(self.frozen_decode(torch.cat(assessed_z)), clean.repeat(len(assessed_z), 1, 1, 1))
        pred_q = torch.cat(assessed_q).float()
        loss_quality = F.huber_loss(pred_q, target_q, delta=1.0)
        loss_deg = F.binary_cross_entropy_with_logits(
            torch.cat([logits, logits_clean]).float(), torch.cat([labels, torch.zeros_like(labels)])
        )

        total = (w.autoencoder * loss_ae + w.restore * loss_restore + w.flow * loss_flow + w.step * loss_step
                 + w.quality * loss_quality + w.degradation * loss_deg)
        with torch.no_grad():
            psnr_in = psnr_db(degraded, clean).mean()
            psnr_out = target_q[(1 + self.unroll) * n : (2 + self.unroll) * n].mean()  # last unrolled step
        losses = {
            "total": total, "ae": loss_ae.detach(), "restore": loss_restore.detach(), "flow": loss_flow.detach(),
            "monotone": loss_step.detach(), "quality": loss_quality.detach(), "degradation": loss_deg.detach(),
            "psnr_in": psnr_in, "psnr_out": psnr_out,
        }
        if not return_aux:
            return losses
        z_clean_live, z_deg_live = z_both.chunk(2)
        aux = {"z_deg": z_deg_live, "z_clean": z_clean_live, "step_images": step_images, "in_err": in_err,
               "quality": q0, "logits": logits, "cond": cond0}
        return losses, aux
