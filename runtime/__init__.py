"""rar_edge.runtime: the torch-free on-device runtime (the pipeline's last stage).

    from rar_edge.runtime import Restorer
    r = Restorer.load()                         # the shipped default bundle (or a folder: Restorer.load(path))
    res = r.restore(image, budget_ms=200)       # numpy array or PIL image; res.image, res.steps, res.ms ...
    a = r.assess(image)                         # the assessor alone: a.quality (dB), a.degradations, a.present

Nothing in this package may import torch (tests/test_runtime.py checks it with torch blocked); the
ExecuTorch backend imports it lazily because ExecuTorch's desktop Python runtime needs it.
"""

from .backends import resolve_providers
from .profile import DeviceProfile, load_profile
from .restorer import DEFAULT_BUNDLE, Assessment, Restorer, RestoreResult

__all__ = ["DEFAULT_BUNDLE", "Assessment", "DeviceProfile", "Restorer", "RestoreResult", "load_profile",
           "resolve_providers"]
