"""Post-training int8 (``--calib DIR``): observe ranges on real degraded photos through the loop, convert.

The fallback when no distilled student exists. QAT (``rar-edge distill``) trains the weights against the
int8 ranges and is more accurate; this only measures ranges. The calibration data runs through the same
path as deployment (encode, then assess/restore for the step cap, then decode), so the restorer and
assessor see the latents of later steps too, not only the first.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch

from rar_edge.data.degrade import degrade
from rar_edge.data.folder import PhotoFolder
from rar_edge.errors import RarEdgeError
from rar_edge.model import ENTRY_POINTS, RAR

from .qat import QuantRAR, drop_unused_weights, export_graph
from .quantizers import make_quantizer

log = logging.getLogger(__name__)


def calibration_batches(folder: str | Path, crops: int = 32, crop: int = 128, batch: int = 8, seed: int = 0):
    """Degraded random crops of the photos in ``folder`` (plus the clean crops), ``batch`` at a time."""
    photos = PhotoFolder(folder)
    if not photos.images:
        raise RarEdgeError(f"calibration folder {folder} holds no readable photos; pass a folder of photos (jpg/png)")
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, crops, batch):
        clean = photos.random_crops(min(batch, crops - start), crop, gen)
        yield degrade(clean, seed=seed + start).degraded
        if start == 0:  # clean photos too: the assessor's top of the quality range needs observing
            yield clean


#: Entry points post-training int8 keeps in float by default: the assessor, as the QAT recipe does. Its
#: quality score drives the loop's decisions, and min/max-calibrated int8 moved it by 1.07 dB on the
#: test suite's model (the export's parity bound is 0.5 dB; docs/quantization.md).
PTQ_KEEP_FLOAT: tuple[str, ...] = ("assess",)


def calibrate_int8(model: RAR, folder: str | Path, crops: int = 32, crop: int = 128,
                   keep_float: tuple[str, ...] = PTQ_KEEP_FLOAT, around: QuantRAR | None = None) -> QuantRAR:
    """int8 (XNNPACK quantizer, per-channel weights) programs of ``model`` with ranges from ``folder``;
    the ``keep_float`` entry points stay float graphs.

    ``around``: take the ``keep_float`` entry points from these programs instead (e.g. a student's QAT-converted
    int8 encode and restore), so the calibrated parts observe the latents they will see deployed.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = make_quantizer("xnnpack", qat=False)
    model = copy.deepcopy(model).cpu().eval()
    calibrated = tuple(n for n in ENTRY_POINTS if n not in keep_float)
    parts = {name: prepare_pt2e(export_graph(model, name), quantizer) if name in calibrated
             else around.parts[name] if around is not None else export_graph(model, name) for name in ENTRY_POINTS}
    quantized = tuple(n for n in ENTRY_POINTS if n in calibrated or (around is not None and n in around.quantized))
    prepared = QuantRAR(model.config, parts, quantized).eval()
    seen = 0
    with torch.no_grad():
        for images in calibration_batches(folder, crops, crop):
            z = prepared.encode(images)
            for _ in range(model.config.max_steps):
                _, _, cond = prepared.assess(z)
                z = prepared.restore(z, cond)
            prepared.assess(z)
            prepared.decode(z)
            seen += images.shape[0]
    log.info("calibrated int8 ranges of %s on %d crops of %s", ", ".join(calibrated), seen, folder)
    # convert_pt2e leaves the float weights it folded into int8 constants on the graph: drop them (QuantRAR.convert).
    return QuantRAR(model.config, {n: drop_unused_weights(convert_pt2e(p)) if n in calibrated else p
                                   for n, p in prepared.parts.items()}, quantized).eval()
