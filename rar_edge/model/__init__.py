"""RAR model: autoencoder, assessor, restorer, the loop, presets and complexity counts."""

from .complexity import count_complexity
from .config import RARConfig
from .presets import PRESETS, Preset, get_preset
from .rar import ENTRY_POINTS, RAR, LoopResult
from .transfer import transfer_weights


def create_model(name: str) -> RAR:
    """A freshly initialised model of a named preset."""
    return RAR(get_preset(name).config)


__all__ = ["RAR", "RARConfig", "LoopResult", "ENTRY_POINTS", "PRESETS", "Preset", "get_preset",
           "create_model", "count_complexity", "transfer_weights"]
