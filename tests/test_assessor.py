"""The assessor's fixed detail statistics, and starting a model with them from one without (``--init``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rar_edge.model import RAR, create_model, get_preset, transfer_weights
from rar_edge.model.assessor import DetailStats
from rar_edge.model.config import RARConfig


def _reference(z: np.ndarray, scales: int, eps: float, offset: float) -> np.ndarray:
    """log mean |z - its 2x2 block mean| per channel + offset, then 2x2 average pooling, ``scales`` times."""
    out = []
    for _ in range(scales):
        n, c, h, w = z.shape
        blocks = z.reshape(n, c, h // 2, 2, w // 2, 2)
        mean = blocks.mean(axis=(3, 5), keepdims=True)
        out.append(np.log(np.abs(blocks - mean).mean(axis=(2, 3, 4, 5)) + eps) + offset)
        z = mean[:, :, :, 0, :, 0]
    return np.concatenate(out, axis=1)


def test_detail_stats_match_a_numpy_reference():
    z = torch.randn(2, 5, 12, 8)
    got = DetailStats(5)(z).numpy()
    np.testing.assert_allclose(got, _reference(z.numpy().astype(np.float64), DetailStats.SCALES, DetailStats.EPS,
                                          DetailStats.OFFSET),
                               rtol=1e-5, atol=1e-5)


def test_grid_contrast_matches_a_numpy_reference():
    z = torch.randn(2, 5, 12, 8)
    got = DetailStats(5, grid=True)(z).numpy()
    ref = _reference(z.numpy().astype(np.float64), DetailStats.SCALES, DetailStats.EPS, DetailStats.OFFSET)
    shifted = _reference(z.numpy()[:, :, 1:-1, 1:-1].astype(np.float64), 1, DetailStats.EPS, DetailStats.OFFSET)
    assert got.shape == (2, DetailStats.width(5, grid=True)) == (2, 15)
    np.testing.assert_allclose(got, np.concatenate([ref, shifted - ref[:, :5]], axis=1), rtol=1e-5, atol=1e-5)


def test_grid_contrast_sees_blocks_and_not_texture():
    """A latent made of flat 2x2 blocks (JPEG's 8x8 pixel blocks at a 4-pixel stride) raises the contrast;
    a texture without a grid leaves it near zero."""
    gen = torch.Generator().manual_seed(0)
    texture = torch.randn(1, 4, 32, 32, generator=gen)
    blocks = torch.randn(1, 4, 16, 16, generator=gen).repeat_interleave(2, 2).repeat_interleave(2, 3)
    stats = DetailStats(4, grid=True)
    contrast = lambda z: stats(z)[:, 2 * 4 :]  # noqa: E731: the last C values
    assert (contrast(blocks + 0.01 * texture) > 2).all()
    assert contrast(texture).abs().max() < 0.15


def test_trunk_stats_are_the_mean_and_mean_absolute_value_at_each_scale():
    """The trunk computes mean |h| as 2 mean(relu(h)) - mean(h); it must equal the plain definition."""
    a = create_model("rar-tiny").assessor.eval()
    z = torch.randn(2, a.stem.in_channels, 16, 12)
    with torch.no_grad():
        got = a.trunk_stats(z)
        h, ref = torch.relu(a.stem(z)), []
        for i, stage in enumerate(a.scales):
            h = stage(h)
            ref += [h.mean(dim=(2, 3)), h.abs().mean(dim=(2, 3))]
            if i < len(a.downs):
                h = a.downs[i](h)
    torch.testing.assert_close(got, torch.cat(ref, dim=1), rtol=1e-5, atol=1e-6)


def test_detail_stats_see_noise_and_ignore_brightness():
    gen = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    smooth = torch.stack([torch.sin(3 * yy + c) * torch.cos(2 * xx) for c in range(4)])[None]
    noisy = smooth + 0.05 * torch.randn(smooth.shape, generator=gen)
    stats = DetailStats(4)
    seen = stats(noisy) - stats(smooth)
    assert (seen > 0).all() and (seen[:, :4] > 0.4).all()  # every channel, both scales; most at the finest
    torch.testing.assert_close(stats(smooth + 0.3), stats(smooth))  # a brightness offset is not


def test_smallest_latent_is_assessed():
    m = create_model("rar-tiny").eval()
    q, probs, cond = m.assess(torch.randn(1, m.config.latent_channels, 4, 4))  # a 16 px image
    assert torch.isfinite(q).all() and probs.shape == (1, 6) and torch.isfinite(cond).all()


def _without_detail(name: str) -> RAR:
    torch.manual_seed(1)
    return RAR(dataclasses.replace(get_preset(name).config, assess_detail=False, assess_grid=False, max_steps=6,
                                   keep="last"))


def test_transfer_weights_keeps_the_old_model_function():
    old = _without_detail("rar-tiny").eval()
    new = create_model("rar-tiny").eval()
    transfer_weights(new, old)
    z = old.encode(torch.rand(2, 3, 32, 48))
    for a, b in zip(old.assess(z), new.assess(z)):
        torch.testing.assert_close(a, b)
    cond = old.assess(z)[2]
    torch.testing.assert_close(new.restore(z, cond), old.restore(z, cond))
    # The new inputs start at zero weight but are trainable: gradients reach the MLP's new columns and
    # the direct map, for the quality, the degradations and the embedding.
    quality, probs, cond = new.assess(z)
    (quality.sum() + probs.sum() + cond.sum()).backward()
    width = new.assessor.mlp[0].weight.grad.shape[1]
    assert new.assessor.mlp[0].weight.grad[:, width - DetailStats.SCALES * 48:].abs().sum() > 0
    direct = new.assessor.direct.weight.grad.abs().sum(dim=1)
    assert (direct > 0).all()


def _tiny(**changes) -> RAR:
    return RAR(dataclasses.replace(get_preset("rar-tiny").config, **changes))


def _grown(seed: int, flag: str, before, after):
    """A trained-looking tiny model without a restorer path, the same with it (transfer_weights), a latent and
    its conditioning; the two restore steps are checked equal: the added path starts at zero. (The gain path
    of 2026-12-01 was measured and removed again: BENCHMARKS.md; this serves the next one too.)"""
    torch.manual_seed(seed)
    old = _tiny(**{flag: before}).eval()
    for p in old.restorer.parameters():  # a trained restorer: not the identity a fresh one is
        p.data.normal_(0, 0.05)
    new = _tiny(**{flag: after}).eval()
    transfer_weights(new, old)
    z = old.encode(torch.rand(2, 3, 32, 48))
    cond = old.assess(z)[2]
    torch.testing.assert_close(new.restore(z, cond), old.restore(z, cond))
    return old, new, z, cond


def test_transfer_weights_adds_the_global_step():
    old, new, z, cond = _grown(2, "global_rank", 0, 16)
    # The new path is trainable from there: its output map and its gains get gradients, and a step of
    # it changes the output by a per-image linear map of the latent.
    new.restore(z, cond).square().sum().backward()
    g = new.restorer.global_step
    assert g.from_basis.weight.grad.abs().sum() > 0 and g.offset.bias.grad.abs().sum() > 0
    with torch.no_grad():  # a rank-16 basis of the 48 latent channels, each gained by 2: 2x their projection
        basis = torch.linalg.qr(torch.randn(48, 16))[0]  # orthonormal columns
        g.to_basis.weight.copy_(basis.T[:, :, None, None])
        g.from_basis.weight.copy_(basis[:, :, None, None])
        g.gain.bias.fill_(1.0)
        g.offset.bias.fill_(0.25)
        projected = torch.einsum("ck,dk,ndhw->nchw", basis, basis, z)
        torch.testing.assert_close(new.restore(z, cond) - old.restore(z, cond), 2 * projected + 0.25)


def test_transfer_weights_grows_a_deeper_restorer():
    """rar-edge-s weights start a deeper restorer exactly: each stage keeps its blocks first, the new ones
    are the identity until training moves their residual scales."""
    old, new, z, cond = _grown(4, "restore_depths", (1, 1, 1), (2, 3, 2))
    assert [len(new.restorer.mid.blocks), len(new.restorer.dec2.blocks)] == [2, 3]
    torch.testing.assert_close(new.restorer.enc2.blocks[0].dwconv.weight, old.restorer.enc2.blocks[0].dwconv.weight)
    new.restore(z, cond).square().sum().backward()
    assert new.restorer.enc2.blocks[2].gamma.grad.abs().sum() > 0  # an added block learns from the first step


def test_transfer_weights_grows_a_wider_restorer():
    """A wider restorer starts exactly where the narrow one was (each gate's halves kept in their halves, new
    channels reading old ones but not written back), and its new channels learn from the first step."""
    old, new, z, cond = _grown(5, "restore_width", 16, 24)
    block_old, block_new = old.restorer.enc1.blocks[0], new.restorer.enc1.blocks[0]
    torch.testing.assert_close(block_new.expand.weight[24:40, :16], block_old.expand.weight[16:32])  # 2nd half
    assert block_new.project.weight[:16, 16:].abs().sum() == 0  # new -> old: zero
    assert block_new.project.weight[16:, :16].abs().sum() > 0  # old -> new: this model's initialisation
    new.restore(z, cond).square().sum().backward()
    assert new.restorer.head.weight.grad[:, 16:].abs().sum() > 0  # the output starts reading the new channels
    with pytest.raises(ValueError, match="wider"):
        transfer_weights(_tiny(restore_width=8), old)


def test_trainer_starts_a_deeper_preset_from_a_shallower_checkpoint(tmp_path):
    """``rar-edge train --preset rar-edge-s-d2 --init <rar-edge-s checkpoint>``: the same function, more blocks."""
    from rar_edge.train.checkpoint import save_checkpoint
    from rar_edge.train.trainer import TrainConfig, default_task

    src = RAR(get_preset("rar-edge-s").config)
    for p in src.restorer.parameters():
        p.data.normal_(0, 0.05)
    save_checkpoint(tmp_path / "s", src, "rar-edge-s", step=0)
    model = default_task(TrainConfig(preset="rar-edge-s-d2", data="unused", out=str(tmp_path / "o"),
                                     init=str(tmp_path / "s")), torch.device("cpu")).model.eval()
    z = torch.randn(1, 48, 8, 8)
    cond = torch.rand(1, 32) * 2 - 1
    torch.testing.assert_close(model.restore(z, cond), src.eval().restore(z, cond))


def test_transfer_weights_adds_the_grid_contrast():
    torch.manual_seed(5)
    old = _tiny(assess_grid=False).eval()
    for p in old.assessor.parameters():  # a trained-looking assessor: its direct map is not zero
        p.data.normal_(0, 0.1)
    new = _tiny(assess_grid=True).eval()
    transfer_weights(new, old)
    z = old.encode(torch.rand(2, 3, 32, 48))
    for a, b in zip(old.assess(z), new.assess(z)):
        torch.testing.assert_close(a, b)
    quality, probs, cond = new.assess(z)
    (quality.sum() + probs.sum() + cond.sum()).backward()
    c = new.config.latent_channels  # the contrast's columns, last in both inputs, learn from the first step
    assert new.assessor.mlp[0].weight.grad[:, -c:].abs().sum() > 0
    assert new.assessor.direct.weight.grad[:, -c:].abs().sum() > 0
    with pytest.raises(ValueError, match="grid contrast .* needs detail=True"):
        _tiny(assess_detail=False, assess_grid=True)


def test_transfer_weights_ignores_the_loop_settings_and_the_judge():
    """A fit-stopped checkpoint (its own stop rule and judge) starts a new run: ``--init checkpoints/...``."""
    source = _tiny(max_steps=6, keep="last", min_better=0.6, judge=(0.5,) * 4 + (-1.0,))
    model = _tiny()
    transfer_weights(model, source)
    for a, b in zip(model.state_dict().values(), source.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_transfer_weights_refuses_other_architectures():
    with pytest.raises(ValueError, match="architectures differ"):
        transfer_weights(create_model("rar-tiny"), _without_detail("rar-edge-s"))
    with pytest.raises(ValueError, match="source has assess_detail=True and this model False"):
        transfer_weights(_without_detail("rar-tiny"), create_model("rar-tiny"))
    with pytest.raises(ValueError, match="source has global_rank=16 and this model 0"):
        transfer_weights(_tiny(global_rank=0), _tiny(global_rank=16))
    with pytest.raises(ValueError, match=r"the source's restorer is deeper \(\[1, 2, 1\]\) than this model's"):
        transfer_weights(_tiny(restore_depths=(1, 1, 1)), _tiny(restore_depths=(1, 2, 1)))


def test_configs_written_before_detail_statistics_load_without_them():
    d = get_preset("rar-edge-s").config.to_dict()
    del d["assess_detail"]
    assert RARConfig.from_dict(d).assess_detail is False
    assert get_preset("rar-edge-s").config.assess_detail is True
    del d["assess_grid"]
    assert RARConfig.from_dict(d).assess_grid is False


def test_transfer_weights_gives_a_restorer_of_another_kind_a_fresh_start():
    """``--init`` of rar-edge-s-conv from a NAF checkpoint: codec and assessor come over, the restorer is new
    (the identity), whatever its width; ``fresh`` restarts a same-kind part the same way, for the control run."""
    torch.manual_seed(6)
    old = _tiny().eval()
    for p in old.parameters():  # trained-looking everywhere
        p.data.add_(0.05 * torch.randn_like(p))
    image = torch.rand(2, 3, 32, 48)
    z = old.encode(image)
    cond = old.assess(z)[2]
    for new, fresh in ((_tiny(restore_block="conv", restore_width=8).eval(), ()),
                       (_tiny(restore_block="conv", restore_width=24, restore_depths=(2, 1, 1)).eval(), ()),
                       (_tiny().eval(), ("restorer",))):
        transfer_weights(new, old, fresh)
        torch.testing.assert_close(new.encode(image), z)
        torch.testing.assert_close(new.decode(z), old.decode(z))
        for a, b in zip(old.assess(z), new.assess(z)):
            torch.testing.assert_close(a, b)
        assert torch.equal(new.restore(z, cond), z)  # a new restorer: the identity
        assert not torch.equal(old.restore(z, cond), z)
    with pytest.raises(ValueError, match="unknown parts \\['head'\\]"):
        transfer_weights(_tiny(), old, ("head",))
    with pytest.raises(TypeError, match="tuple of part names"):
        transfer_weights(_tiny(), old, "restorer")


def test_a_fresh_part_takes_nothing_of_the_source_and_bridges_nothing():
    """A fresh assessor keeps this model's initialisation even where the source's has statistics this model
    lacks (no bridging, no refusal); the other parts still come over."""
    torch.manual_seed(7)
    old = _tiny(assess_detail=True, assess_grid=True).eval()
    for p in old.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    new = _tiny(assess_detail=False, assess_grid=False).eval()
    with pytest.raises(ValueError, match="assess_detail=True"):
        transfer_weights(new, old)
    init = {k: v.clone() for k, v in new.assessor.state_dict().items()}
    transfer_weights(new, old, ("assessor",))
    assert all(torch.equal(v, init[k]) for k, v in new.assessor.state_dict().items())
    z = old.encode(torch.rand(1, 3, 32, 32))
    cond = torch.rand(1, new.config.cond_dim)
    torch.testing.assert_close(new.restore(z, cond), old.restore(z, cond))


def test_a_naf_models_json_reads_without_the_block_field():
    """NAF configs leave the block fields out (versions before them reject unknown keys); others carry theirs."""
    from rar_edge.model.config import BLOCK_FIELDS, RARConfig

    naf, conv = get_preset("rar-edge-s").config, get_preset("rar-edge-s-conv").config
    dense = get_preset("rar-edge-s-dense").config
    assert not set(BLOCK_FIELDS) & set(naf.to_dict())
    assert conv.to_dict()["restore_block"] == "conv" and not {"ae_block", "assess_block"} & set(conv.to_dict())
    assert all(dense.to_dict()[name] == "conv" for name in BLOCK_FIELDS)
    for c in (naf, conv, dense):
        assert RARConfig.from_dict(c.to_dict()) == c


def test_transfer_weights_starts_a_part_of_another_kind_fresh():
    """An assessor of another block kind keeps this model's initialisation and the other parts come over; a
    codec of another kind is a new latent space, so every part keeps this model's initialisation."""
    torch.manual_seed(8)
    old = _tiny().eval()
    for p in old.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    image = torch.rand(2, 3, 32, 48)
    z = old.encode(image)
    cond = old.assess(z)[2]
    everything = ("encoder", "decoder", "assessor", "restorer")
    for changed, parts in (("ae_block", everything), ("assess_block", ("assessor",)),
                           ("restore_block", ("restorer",))):
        new = _tiny(**{changed: "conv"}).eval()
        init = {k: v.clone() for k, v in new.state_dict().items()}
        transfer_weights(new, old)
        for key, value in new.state_dict().items():
            expected = init[key] if key.split(".")[0] in parts else old.state_dict()[key]
            assert torch.equal(value, expected), (changed, key)
        if "restorer" in parts:  # a fresh restorer is the identity
            assert torch.equal(new.restore(z, cond), z)
        else:
            torch.testing.assert_close(new.restore(z, cond), old.restore(z, cond))


def test_trainer_refuses_bad_init_fresh(tmp_path):
    from rar_edge.errors import RarEdgeError
    from rar_edge.train.trainer import TrainConfig, train

    with pytest.raises(RarEdgeError, match="--init-fresh names \\['codec'\\]"):
        train(TrainConfig(preset="rar-tiny", data="unused", out=str(tmp_path / "o"), init="x", init_fresh=("codec",)))
    with pytest.raises(RarEdgeError, match="--init-fresh needs --init"):
        train(TrainConfig(preset="rar-tiny", data="unused", out=str(tmp_path / "o"), init_fresh=("restorer",)))
