"""rar_edge: RAR (Restore, Assess and Repeat) image restoration as an edge deployment SDK.

This module is torch-free on purpose: the runtime (``rar_edge.runtime``) and the CLI's
``--help`` must import it on machines without torch.
"""

__version__ = "0.1.0"

#: Degradation types, in the one order used everywhere (labels, manifest, JSON).
DEGRADATIONS: tuple[str, ...] = ("noise", "blur", "jpeg", "rain", "haze", "low_light")

__all__ = ["__version__", "DEGRADATIONS"]
