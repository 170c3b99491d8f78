"""A test synthesis the project never trains on: albumentations' noise, blur, compression and weather.

Independent code (OpenCV and numpy, other formulas, other parameter ranges) for the same six
types, so a held-out report on it measures what a model learned about the degradations rather
than about ``rar_edge.data.degrade``'s formulas: the stand-in for users' photos. Nothing under
rar_edge/data or rar_edge/train may import this module (a test checks).
"""

from __future__ import annotations

import numpy as np
import torch

from rar_edge import DEGRADATIONS, FOREIGN_SYNTHESIS
from rar_edge.data.degrade import APPLY_ORDER, DegradedBatch
from rar_edge.errors import RarEdgeError


def _models() -> dict[str, dict[str, object]]:
    """Per type, albumentations transforms (always applied) by name; ranges are moderate to heavy."""
    try:
        import albumentations as A
    except ImportError:
        raise RarEdgeError(f"the {FOREIGN_SYNTHESIS!r} test synthesis needs albumentations: "
                           "pip install 'rar-edge[eval]'") from None
    return {
        "noise": {"gauss_noise": A.GaussNoise(std_range=(0.03, 0.15), p=1.0),
                  "iso_noise": A.ISONoise(color_shift=(0.03, 0.08), intensity=(1.0, 3.0), p=1.0),
                  "shot_noise": A.ShotNoise(scale_range=(0.05, 0.3), p=1.0),
                  "speckle": A.MultiplicativeNoise(multiplier=(0.75, 1.25), per_channel=True, elementwise=True, p=1.0)},
        "blur": {"gaussian_blur": A.GaussianBlur(blur_limit=(5, 11), sigma_limit=(1.0, 3.0), p=1.0),
                 "defocus": A.Defocus(radius=(2, 6), alias_blur=(0.1, 0.4), p=1.0),
                 "motion_blur": A.MotionBlur(blur_limit=(7, 15), p=1.0),
                 "zoom_blur": A.ZoomBlur(max_factor=(1.04, 1.12), p=1.0),
                 "glass_blur": A.GlassBlur(sigma=0.7, max_delta=2, iterations=1, p=1.0)},
        "jpeg": {"opencv_jpeg": A.ImageCompression(compression_type="jpeg", quality_range=(10, 40), p=1.0)},
        "rain": {"drizzle": A.RandomRain(rain_type="drizzle", p=1.0),
                 "heavy": A.RandomRain(rain_type="heavy", p=1.0),
                 "torrential": A.RandomRain(rain_type="torrential", p=1.0)},
        "haze": {"fog": A.RandomFog(fog_coef_range=(0.3, 0.8), alpha_coef=0.1, p=1.0)},
        "low_light": {"gamma": A.RandomGamma(gamma_limit=(200, 350), p=1.0),
                      "brightness_contrast": A.RandomBrightnessContrast(brightness_limit=(-0.45, -0.2),
                                                                        contrast_limit=(-0.3, 0.0), p=1.0)},
    }


#: Models that also apply another type to the whole image, by (type, model name): albumentations' fog ends
#: with a Gaussian blur of the whole image (kernel min(H, W) / 30: 9 px at 256², 35 px at 1024²), so a
#: fogged image is blurred too and detection is scored with blur present (the case keeps its name).
#: (Its rain blurs only the rain layer; it dims the image by 0.7, less than low light's darkest half.)
IMPLIED: dict[tuple[str, str], tuple[str, ...]] = {("haze", "fog"): ("blur",)}


def apply_foreign(clean: torch.Tensor, labels: torch.Tensor, seed: int) -> DegradedBatch:
    """Degrade ``clean`` (N,3,H,W in [0,1]) by ``labels`` with albumentations, one model per type drawn
    from ``seed``, types in APPLY_ORDER; 8-bit between stages, as a camera pipeline would. The returned
    labels add the types a model applies as well (``IMPLIED``)."""
    import albumentations as A

    models = _models()
    rng = np.random.default_rng(seed)
    n = clean.shape[0]
    images = (clean.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy().copy()
    chosen = torch.full(labels.shape, -1, dtype=torch.long)
    present = labels.clone()
    for i in range(n):
        for name in APPLY_ORDER:
            j = DEGRADATIONS.index(name)
            if labels[i, j] <= 0:
                continue
            k = int(rng.integers(len(models[name])))
            chosen[i, j] = k
            model, transform = list(models[name].items())[k]
            images[i] = A.Compose([transform], p=1.0, seed=int(rng.integers(2**31)))(image=images[i])["image"]
            for implied in IMPLIED.get((name, model), ()):
                present[i, DEGRADATIONS.index(implied)] = 1
    degraded = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).to(clean.device)
    zeros = torch.zeros(labels.shape)
    return DegradedBatch(degraded, clean, present, zeros, zeros, chosen, FOREIGN_SYNTHESIS,
                         {name: tuple(m) for name, m in models.items()})
