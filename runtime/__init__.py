"""rar_edge.runtime: the torch-free on-device runtime (the pipeline's last stage).

    from rar_edge.runtime import Restorer
    r = Restorer.load("exports/rar-edge-s-int8-onnx")
    res = r.restore(image, budget_ms=200)       # numpy array or PIL image; res.image, res.steps, res.ms ...

Nothing in this package may import torch (tests/test_runtime.py checks it with torch blocked); the
ExecuTorch backend imports it lazily because ExecuTorch's desktop Python runtime needs it.
"""

from .profile import DeviceProfile, load_profile
from .restorer import Restorer, RestoreResult

__all__ = ["DeviceProfile", "Restorer", "RestoreResult", "load_profile"]
