"""Reference restore in torch: the adaptive loop on whole images (the runtime's ground truth)."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from rar_edge.loop import StopRule
from rar_edge.runtime.tiling import pad_mode
from rar_edge.model import RAR


def restore_array(model: RAR, image: np.ndarray, rule: StopRule) -> tuple[np.ndarray, dict]:
    """Restore one float RGB (H,W,3) image; pads to the size multiple by reflection and crops back.

    Returns (restored image, record) in the shape of ``rar_edge.runtime.files.RestoreFn``.
    """
    h, w = image.shape[:2]
    m = model.config.size_multiple
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        # The runtime's rule (one padding everywhere): reflect where the pad is smaller than the side.
        mode = {"reflect": "reflect", "edge": "replicate"}[pad_mode(h, w, ph, pw)]
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    x = x.to(next(model.parameters()).device)
    t0 = time.perf_counter()
    res = model.restore_loop(x, rule)[0]
    ms = (time.perf_counter() - t0) * 1000
    out = res.image[:, :h, :w].cpu().numpy().transpose(1, 2, 0)
    info = {"steps": res.steps, "steps_run": res.steps_run, "quality": [round(q, 3) for q in res.quality],
            "degradations": {k: round(v, 4) for k, v in res.degradations.items()},
            "stop_reason": res.stop_reason, "ms": {"total": round(ms, 2)}}
    return out, info
