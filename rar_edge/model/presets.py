"""Named model presets, timm-style: ``create_model("rar-edge-s")``."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .config import RARConfig


@dataclass(frozen=True)
class Preset:
    """A named configuration and the limits it promises (checked by tests/test_presets.py)."""

    name: str
    config: RARConfig
    description: str
    max_params: int | None = None
    min_params: int | None = None
    #: GMAC per megapixel for one assess + restore step.
    max_step_gmac_per_mp: float | None = None
    #: GMAC per megapixel for encode + decode together.
    max_codec_gmac_per_mp: float | None = None


#: rar-edge-s's configuration; its deeper and wider variants change only the restorer's depth or width, so that
#: ``--init`` from a rar-edge-s checkpoint grows them exactly (rar_edge.model.transfer).
_EDGE_S = RARConfig(latent_channels=48, ae_width=32, ae_depth=1, assess_width=16, assess_depth=1,
                    assess_detail=True, assess_grid=True,
                    restore_width=32, restore_depths=(1, 1, 2), cond_dim=32, global_rank=40)
_TINY = RARConfig(latent_channels=48, ae_width=16, ae_depth=1, assess_width=8, assess_depth=1,
                  assess_detail=True, assess_grid=True,
                  restore_width=16, restore_depths=(1, 1, 1), cond_dim=16, global_rank=16)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "rar-teacher",
            RARConfig(latent_channels=64, ae_width=64, ae_depth=2, assess_width=32, assess_depth=2,
                      assess_detail=True, assess_grid=True,
                      restore_width=64, restore_depths=(2, 2, 4), cond_dim=64, global_rank=64),
            "full-precision teacher for GPU servers (3-8 M parameters)",
            min_params=3_000_000, max_params=8_000_000,
        ),
        Preset(
            "rar-edge-s",
            _EDGE_S,
            "int8-ready student for phones and Jetsons",
            max_params=1_000_000, max_step_gmac_per_mp=5.0, max_codec_gmac_per_mp=5.0,
        ),
        Preset(
            "rar-edge-s-d2",
            replace(_EDGE_S, restore_depths=(2, 2, 4)),
            "rar-edge-s with a restorer twice as deep (grows from rar-edge-s checkpoints exactly)",
            max_params=1_500_000, max_step_gmac_per_mp=10.0, max_codec_gmac_per_mp=5.0,
        ),
        Preset(
            "rar-edge-s-d3",
            replace(_EDGE_S, restore_depths=(3, 3, 6)),
            "rar-edge-s with a restorer three times as deep (grows from rar-edge-s checkpoints exactly)",
            max_params=2_000_000, max_step_gmac_per_mp=15.0, max_codec_gmac_per_mp=5.0,
        ),
        Preset(
            "rar-edge-s-w48",
            replace(_EDGE_S, restore_width=48),
            "rar-edge-s with a restorer 1.5x as wide (grows from rar-edge-s checkpoints exactly)",
            max_params=2_000_000, max_step_gmac_per_mp=12.0, max_codec_gmac_per_mp=5.0,
        ),
        Preset(
            "rar-edge-s-w64",
            replace(_EDGE_S, restore_width=64),
            "rar-edge-s with a restorer twice as wide (grows from rar-edge-s checkpoints exactly)",
            max_params=3_000_000, max_step_gmac_per_mp=20.0, max_codec_gmac_per_mp=5.0,
        ),
        Preset(
            "rar-edge-s-conv",
            replace(_EDGE_S, restore_block="conv"),
            "rar-edge-s with a restorer of dense conv blocks, fast in int8 (--init from rar-edge-s: a new restorer)",
            max_params=1_000_000, max_step_gmac_per_mp=7.5, max_codec_gmac_per_mp=5.0,
        ),
        Preset(
            "rar-edge-s-dense",
            replace(_EDGE_S, restore_block="conv", ae_block="conv", assess_block="conv"),
            "rar-edge-s of dense conv blocks throughout: an all-int8 candidate (issue 23); rar-edge reblock carries "
            "a rar-edge-s-conv checkpoint into it (--init cannot: a codec of another kind)",
            max_params=1_000_000, max_step_gmac_per_mp=7.5, max_codec_gmac_per_mp=5.5,
        ),
        Preset(
            "rar-edge-m",
            RARConfig(latent_channels=48, ae_width=32, ae_depth=1, assess_width=24, assess_depth=1,
                      assess_detail=True, assess_grid=True,
                      restore_width=48, restore_depths=(2, 2, 4), cond_dim=48, global_rank=48),
            "larger student: rar-edge-s's codec, a 3x restore step (issue 20's quality/compute comparison)",
            max_params=2_500_000, max_step_gmac_per_mp=20.0, max_codec_gmac_per_mp=5.0,
        ),
        Preset(
            "rar-tiny",
            _TINY,
            "for tests: trains in seconds",
            max_params=250_000,
        ),
        Preset(
            "rar-tiny-dense",
            replace(_TINY, restore_block="conv", ae_block="conv", assess_block="conv"),
            "rar-tiny of dense conv blocks throughout, for tests (rar-edge reblock from rar-tiny)",
            max_params=250_000,
        ),
    ]
}


def get_preset(name: str) -> Preset:
    """Look up a preset by name, with an error that lists the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None
