"""Checkpoints: round trip, and one-line errors on missing, damaged or unknown ones."""

from __future__ import annotations

import json

import pytest
import torch

from rar_edge.errors import RarEdgeError
from rar_edge.model import create_model
from rar_edge.train.checkpoint import load_model, save_checkpoint


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    m = create_model("rar-tiny")
    for p in m.parameters():
        p.data.normal_()
    save_checkpoint(tmp_path / "ck", m, "rar-tiny", step=7, metrics={"mean_gain": 1.5})
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config.json", "model.safetensors"]
    loaded, config = load_model(tmp_path / "ck")
    assert config["step"] == 7 and config["preset"] == "rar-tiny" and config["metrics"]["mean_gain"] == 1.5
    assert "PSNR" in config["quality_meaning"]
    for (k, a), (_, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    # The model file alone is accepted too.
    load_model(tmp_path / "ck" / "model.safetensors")
    assert not list(tmp_path.glob(".*tmp"))


def test_overwrite_is_atomic(tmp_path):
    m = create_model("rar-tiny")
    save_checkpoint(tmp_path / "ck", m, "rar-tiny", step=1)
    save_checkpoint(tmp_path / "ck", m, "rar-tiny", step=2)
    assert json.loads((tmp_path / "ck" / "config.json").read_text())["step"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]


def test_missing(tmp_path):
    with pytest.raises(RarEdgeError, match="not found"):
        load_model(tmp_path / "nope")


def test_damaged_weights(tmp_path):
    save_checkpoint(tmp_path / "ck", create_model("rar-tiny"), "rar-tiny", step=1)
    (tmp_path / "ck" / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(RarEdgeError, match="damaged"):
        load_model(tmp_path / "ck")


def test_damaged_config(tmp_path):
    save_checkpoint(tmp_path / "ck", create_model("rar-tiny"), "rar-tiny", step=1)
    (tmp_path / "ck" / "config.json").write_text("{not json")
    with pytest.raises(RarEdgeError, match="damaged"):
        load_model(tmp_path / "ck")


@pytest.mark.parametrize("version", ["\n", None, [1], True])
def test_non_integer_format_version_is_damaged(tmp_path, version):
    save_checkpoint(tmp_path / "ck", create_model("rar-tiny"), "rar-tiny", step=1)
    cfg_path = tmp_path / "ck" / "config.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "format_version": version}))
    with pytest.raises(RarEdgeError, match="is not an integer") as e:
        load_model(tmp_path / "ck")
    assert "\n" not in str(e.value)


def test_unknown_preset_and_mismatched_weights(tmp_path):
    save_checkpoint(tmp_path / "ck", create_model("rar-tiny"), "rar-tiny", step=1)
    cfg_path = tmp_path / "ck" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "preset": "rar-huge"}))
    with pytest.raises(RarEdgeError, match="unknown preset"):
        load_model(tmp_path / "ck")
    cfg["model"]["latent_channels"] = 8
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(RarEdgeError, match="does not match"):
        load_model(tmp_path / "ck")
