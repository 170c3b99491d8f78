"""rar-edge reblock: a trained model carried into another block kind, block by block."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from rar_edge.errors import RarEdgeError
from rar_edge.model import RAR, get_preset
from rar_edge.train.checkpoint import load_model
from rar_edge.train.reblock import BlockFit, reblocked_config, start_from

from conftest import cli

#: rar-tiny -> rar-tiny-dense: every part's blocks change kind.
NEW_BLOCKS = ["encoder.body.blocks.0", "decoder.body.blocks.0", "assessor.scales.0.blocks.0",
              "assessor.scales.1.blocks.0", "assessor.scales.2.blocks.0", "restorer.enc1.blocks.0",
              "restorer.enc2.blocks.0", "restorer.mid.blocks.0", "restorer.dec2.blocks.0", "restorer.dec1.blocks.0"]


def _trained_like_source() -> RAR:
    """rar-tiny with every weight moved from its initialisation (NAF blocks start as the identity: a block
    with zero residual scales has no residual to fit)."""
    torch.manual_seed(0)
    source = RAR(get_preset("rar-tiny").config)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return source.eval()


def test_config_takes_the_presets_block_kinds_and_the_sources_loop():
    tiny = get_preset("rar-tiny").config
    source = type(tiny).from_dict({**tiny.to_dict(), "max_steps": 2, "target_quality": 31.5})
    config, parts = reblocked_config(source, "rar-tiny-dense")
    assert (config.ae_block, config.assess_block, config.restore_block) == ("conv", "conv", "conv")
    assert (config.max_steps, config.target_quality) == (2, 31.5)  # the source's fitted loop, carried
    assert parts == ("encoder", "decoder", "assessor", "restorer")
    # Only the restorer differs between rar-edge-s and rar-edge-s-conv.
    assert reblocked_config(get_preset("rar-edge-s").config, "rar-edge-s-conv")[1] == ("restorer",)


def test_config_errors():
    tiny = get_preset("rar-tiny").config
    with pytest.raises(RarEdgeError, match="differs from the source in .*ae_width.*not only in block kinds"):
        reblocked_config(tiny, "rar-edge-s-dense")
    with pytest.raises(RarEdgeError, match="nothing to reblock"):
        reblocked_config(tiny, "rar-tiny")
    with pytest.raises(RarEdgeError, match="unknown preset 'nope'"):
        reblocked_config(tiny, "nope")


def test_start_copies_everything_but_the_new_blocks_which_start_as_the_identity():
    source = _trained_like_source()
    config, parts = reblocked_config(source.config, "rar-tiny-dense")
    model = RAR(config)
    pairs = start_from(model, source, parts)
    assert [name for name, _, _ in pairs] == NEW_BLOCKS
    theirs = source.state_dict()
    copied = [k for k in model.state_dict() if not any(k.startswith(n + ".") for n in NEW_BLOCKS)]
    assert "encoder.skip.weight" in copied and "assessor.mlp.0.weight" in copied and "restorer.head.weight" in copied
    for k in copied:
        assert torch.equal(model.state_dict()[k], theirs[k]), k
    # Every new block is the identity: its error is exactly the source block's residual (loss 1 per part).
    fit = BlockFit(source, pairs, unroll=2)
    image = torch.rand(2, 3, 64, 64)
    losses = fit(image, image.flip(-1), None, None)
    for part in ("encoder", "decoder", "assessor", "restorer"):
        assert losses[f"fit_{part}"].item() == pytest.approx(1.0, rel=1e-3)
    assert not fit._calls  # cleared after the step: no tensors held between steps
    # What a step fits on: the source loop's calls of each block (encode 1, assess 3, restore 2, decode 1
    # batched call), on degraded and clean crops together.
    fit.source_loop(image, image)
    calls = {name: len(c) for name, c in fit._calls.items()}
    assert calls == {n: {"encoder": 1, "decoder": 1, "assessor": 3, "restorer": 2}[n.split(".")[0]] for n in NEW_BLOCKS}
    assert fit._calls["encoder.body.blocks.0"][0][0][0].shape[0] == 4
    fit.remove_hooks()  # the source runs on its own again, recording nothing
    fit._calls.clear()
    source.encode(image)
    assert not fit._calls


def test_fitting_brings_each_new_block_toward_the_one_it_replaces():
    source = _trained_like_source()
    config, parts = reblocked_config(source.config, "rar-tiny-dense")
    model = RAR(config)
    pairs = start_from(model, source, parts)
    fit = BlockFit(source, pairs, unroll=1)
    params = [p for p in fit.parameters() if p.requires_grad]
    assert {id(p) for p in params} == {id(p) for _, _, new in pairs for p in new.parameters()}  # only new blocks
    optimizer = torch.optim.Adam(params, lr=3e-3)
    torch.manual_seed(1)
    images = torch.rand(4, 3, 64, 64)
    first = None
    for _ in range(40):
        losses = fit(images, images, None, None)
        first = first or {k: v.item() for k, v in losses.items()}
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    last = fit(images, images, None, None)
    for part in ("encoder", "decoder", "assessor", "restorer"):
        assert last[f"fit_{part}"].item() < 0.5 * first[f"fit_{part}"], part
    # The source is untouched by the fit.
    assert all(not p.requires_grad for p in source.parameters())


def test_cli_reblocks_a_checkpoint(tiny_checkpoint, photo_dir, tmp_path):
    out = tmp_path / "rb"
    status, stdout, stderr = cli("reblock", "--source", tiny_checkpoint, "--preset", "rar-tiny-dense", "--data",
                                 photo_dir, "--out", out, "--steps", "6", "--batch", "2", "--crop", "32",
                                 "--val-every", "6", "--device", "cpu")
    assert status == 0, stderr
    assert "block error / residual" in stdout
    assert f"next: rar-edge distill --preset rar-tiny-dense --teacher {tiny_checkpoint} --init {out}/last" in stdout
    model, saved = load_model(out / "last")
    assert saved["preset"] == "rar-tiny-dense" and saved["step"] == 6
    assert model.config.ae_block == "conv" and model.config.restore_block == "conv"
    source, _ = load_model(tiny_checkpoint)
    for key in ("encoder.skip.weight", "decoder.head.weight", "assessor.quality.weight", "restorer.stem.weight"):
        assert torch.equal(model.state_dict()[key], source.state_dict()[key]), key
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"fit_encoder", "fit_decoder", "fit_assessor", "fit_restorer"} <= set(rows[0])
    assert "mean_gain" in rows[-1]["val"]


def test_cli_refuses_another_architecture(tiny_checkpoint, photo_dir, tmp_path):
    status, _, stderr = cli("reblock", "--source", tiny_checkpoint, "--preset", "rar-edge-s-dense", "--data",
                            photo_dir, "--out", tmp_path / "rb", "--steps", "2")
    assert status != 0
    assert "differs from the source in" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "rb").exists()  # refused before anything was written


def test_resume_goes_on_with_the_same_source_only(tiny_checkpoint, photo_dir, tmp_path):
    out = tmp_path / "rb"
    args = ("--preset", "rar-tiny-dense", "--data", photo_dir, "--out", out, "--batch", "2", "--crop", "32",
            "--val-every", "100", "--device", "cpu")
    assert cli("reblock", "--source", tiny_checkpoint, "--steps", "2", *args)[0] == 0
    other = tmp_path / "other_source"
    shutil.copytree(tiny_checkpoint, other)
    status, _, stderr = cli("reblock", "--source", other, "--steps", "4", "--resume", *args)
    assert status != 0 and "fits blocks to --source" in stderr and len(stderr.strip().splitlines()) == 1
    assert load_model(out / "last")[1]["step"] == 2  # refused before any step
    status, _, stderr = cli("reblock", "--source", tiny_checkpoint, "--steps", "4", "--resume", *args)
    assert status == 0, stderr
    assert load_model(out / "last")[1]["step"] == 4
