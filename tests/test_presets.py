"""Presets: shapes, parameter and MAC limits, and torch.export of every entry point."""

from __future__ import annotations

import pytest
import torch

from rar_edge import DEGRADATIONS
from rar_edge.model import ENTRY_POINTS, PRESETS, count_complexity, create_model
from rar_edge.model.entry_points import EntryPoint, example_inputs, export_entry_point


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_limits(name):
    preset = PRESETS[name]
    c = count_complexity(create_model(name))
    params = c["total"]["params"]
    if preset.max_params is not None:
        assert params <= preset.max_params
    if preset.min_params is not None:
        assert params >= preset.min_params
    if preset.max_step_gmac_per_mp is not None:
        assert c["step"]["gmac_per_mp"] <= preset.max_step_gmac_per_mp
    if preset.max_codec_gmac_per_mp is not None:
        assert c["codec"]["gmac_per_mp"] <= preset.max_codec_gmac_per_mp
    assert c["total"]["params"] == sum(p.numel() for p in create_model(name).parameters())


def test_card_limits_are_declared():
    assert PRESETS["rar-edge-s"].max_params == 1_000_000
    assert PRESETS["rar-edge-s"].max_step_gmac_per_mp == 5.0
    assert PRESETS["rar-edge-s"].max_codec_gmac_per_mp == 5.0
    assert (PRESETS["rar-teacher"].min_params, PRESETS["rar-teacher"].max_params) == (3_000_000, 8_000_000)


def test_macs_scale_with_resolution():
    m = create_model("rar-tiny")
    a, b = count_complexity(m, 128), count_complexity(m, 256)
    # Per-megapixel figures are size-independent up to per-image terms (channel attention, the assessor's MLP).
    for entry in ("encode", "restore", "decode"):
        assert a[entry]["gmac_per_mp"] == pytest.approx(b[entry]["gmac_per_mp"], rel=1e-3)
    assert a["encode"]["gmac_per_mp"] > 0.1


@pytest.mark.parametrize("name", list(PRESETS))
def test_entry_point_shapes(name):
    m = create_model(name).eval()
    c = m.config
    x = torch.rand(2, 3, 64, 96)
    z = m.encode(x)
    assert z.shape == (2, c.latent_channels, 64 // c.stride, 96 // c.stride)
    q, probs, cond = m.assess(z)
    assert q.shape == (2,) and probs.shape == (2, len(DEGRADATIONS)) and cond.shape == (2, c.cond_dim)
    assert torch.all((probs >= 0) & (probs <= 1))
    assert m.restore(z, cond).shape == z.shape
    assert m.decode(z).shape == x.shape


def test_untrained_restorer_is_identity():
    m = create_model("rar-tiny").eval()
    z = torch.randn(1, m.config.latent_channels, 16, 16)
    assert torch.equal(m.restore(z, torch.randn(1, m.config.cond_dim)), z)


@pytest.mark.parametrize("name", ["rar-tiny", "rar-edge-s", "rar-edge-s-conv", "rar-edge-s-dense", "rar-teacher"])
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_entry_points_export_fixed_and_dynamic(name, entry):
    torch.manual_seed(0)
    m = create_model(name).eval()
    # Every parameter perturbed: heads, FiLM, residual scales and the global path start at zero, and an export
    # compared on those would compare identity maps. A little noise on everything checks the whole function.
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    fixed = export_entry_point(m, entry, 64, 64)
    args = example_inputs(m, entry, 64, 64)
    ref = EntryPoint(m, entry)(*args)
    got = fixed.module()(*args)
    for r, g in zip(ref if isinstance(ref, tuple) else (ref,), got if isinstance(got, tuple) else (got,)):
        torch.testing.assert_close(g, r)

    dynamic = export_entry_point(m, entry, 64, 64, dynamic=True)
    args = example_inputs(m, entry, 48, 80)  # another size, multiples of size_multiple
    ref = EntryPoint(m, entry)(*args)
    got = dynamic.module()(*args)
    for r, g in zip(ref if isinstance(ref, tuple) else (ref,), got if isinstance(got, tuple) else (got,)):
        torch.testing.assert_close(g, r)


def test_graphs_use_only_portable_ops():
    m = create_model("rar-edge-s").eval()
    allowed = {"conv2d", "pixel_shuffle", "pixel_unshuffle", "add", "sub", "mul", "mean", "linear", "sigmoid",
               "log", "gelu", "relu", "neg", "cat", "split", "chunk", "slice", "select", "view", "reshape", "unsqueeze", "squeeze"}
    seen = set()
    for entry in ENTRY_POINTS:
        ep = export_entry_point(m, entry, 64, 64).run_decompositions({})
        for node in ep.graph.nodes:
            # operator.getitem only unpacks tuples (e.g. split's outputs); it is no op in any backend.
            if node.op == "call_function" and str(node.target).startswith("aten."):
                seen.add(str(node.target).split(".")[1])
    ops = {s.split(".")[0] for s in seen}
    unexpected = {o for o in ops if not any(o.startswith(a) for a in allowed)}
    assert not unexpected, f"ops outside the portable set: {unexpected}"


def test_bad_sizes_rejected():
    m = create_model("rar-tiny")
    with pytest.raises(ValueError, match="multiple of 16"):
        example_inputs(m, "encode", 50, 64)
    with pytest.raises(KeyError, match="known presets"):
        create_model("rar-huge")


def test_conv_blocks_start_as_the_identity_and_follow_the_embedding():
    """A ConvBlock is x until its output conv moves from zero; then each image's embedding shifts its output."""
    from rar_edge.model.blocks import ConvBlock, Stage

    torch.manual_seed(0)
    block = ConvBlock(8, cond_dim=4).eval()
    x = torch.randn(1, 8, 6, 6).repeat(2, 1, 1, 1)  # the same features for two images
    cond = torch.randn(2, 4)  # two different embeddings
    assert torch.equal(block(x, cond), x)
    with torch.no_grad():
        block.out.weight.normal_(0, 0.1)
        unconditioned = block(x, cond)
        assert torch.equal(unconditioned[0], unconditioned[1])  # shift still zero: the embedding does nothing
        block.shift.weight.normal_(0, 1.0)
        y = block(x, cond)
    assert not torch.allclose(y[0], y[1])  # each image follows its own embedding
    torch.testing.assert_close(y[1], block(x[1:], cond[1:])[0])  # and only its own
    with pytest.raises(ValueError, match="conditioned"):
        block(x)
    with pytest.raises(ValueError, match="unknown block kind 'dense'.*naf, conv"):
        Stage(8, 1, 4, block="dense")


def test_conv_preset_holds_no_naf_block_in_its_restorer():
    m = create_model("rar-edge-s-conv")
    kinds = {type(b).__name__ for b in m.restorer.modules()}
    assert "ConvBlock" in kinds and "NAFBlock" not in kinds
    assert "NAFBlock" in {type(b).__name__ for b in m.assessor.modules()}  # the assessor is rar-edge-s's


def test_dense_preset_holds_no_naf_block_anywhere():
    m = create_model("rar-edge-s-dense")
    for part in (m.encoder, m.decoder, m.assessor, m.restorer):
        kinds = {type(b).__name__ for b in part.modules()}
        assert "ConvBlock" in kinds and "NAFBlock" not in kinds, part
