"""rar_edge: RAR (Restore, Assess and Repeat) image restoration as an edge deployment SDK.

This module is torch-free on purpose: the runtime (``rar_edge.runtime``) and the CLI's
``--help`` must import it on machines without torch.
"""

__version__ = "0.1.0"

#: Degradation types, in the one order used everywhere (labels, manifest, JSON).
DEGRADATIONS: tuple[str, ...] = ("noise", "blur", "jpeg", "rain", "haze", "low_light")

#: Degradation syntheses training can use (rar_edge/data/degrade.py), and the default.
SYNTHESES: tuple[str, ...] = ("v1", "v2", "v3")
DEFAULT_SYNTHESIS = "v2"
#: A test synthesis that training never sees (rar_edge/eval/foreign.py): the stand-in for users' photos.
FOREIGN_SYNTHESIS = "albumentations"
#: How each sample's restore error enters the loss (rar_edge/train/losses.py): as is, or through its log.
RESTORE_LOSSES: tuple[str, ...] = ("ratio", "log")
#: The preset of the int8 student that ships in rar_edge/weights/<preset> (``make demo``, exports with no
#: checkpoint); changing it means shipping that preset's weights there (and the Makefile's STUDENT, README).
SHIPPED_STUDENT = "rar-edge-s"
#: Crops of each photo ``rar-edge fit-stop`` holds the clean pass-through on (rar_edge/eval/fit_stop.py).
FIT_CLEAN_CROPS = 8

__all__ = ["__version__", "DEGRADATIONS", "SYNTHESES", "DEFAULT_SYNTHESIS", "FOREIGN_SYNTHESIS",
           "RESTORE_LOSSES", "SHIPPED_STUDENT", "FIT_CLEAN_CROPS"]
