"""bench/tone_curve.py: the global tone curve's oracle and its blind estimator (the head: tests/test_tone.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import load_bench


def test_oracle_undoes_a_per_channel_darkening():
    bench = load_bench("tone_curve")
    c = torch.rand(1, 3, 64, 64)
    d = c * torch.tensor([0.3, 0.5, 0.4]).view(1, 3, 1, 1)  # an affine (exposure) change per channel
    out = bench.oracle(d, c)
    assert float(bench.psnr(out["oracle affine"], c)) > 55  # exact up to float error (capped at 60)
    assert float(bench.psnr(out["oracle lut"], c)) > float(bench.psnr(d, c)) + 20  # binned: close, not exact


def test_cli_refuses_options_without_what_they_act_on(tmp_path, capsys):
    bench = load_bench("tone_curve")
    for args, needs in ((["--gates", "1"], "--train"), (["--assess-gate", "0.5"], "--loop"),
                        (["--head", str(tmp_path), "--minutes", "3"], "--minutes set how --train"),
                        (["--lr", "0.01", "--batch", "4"], "--batch, --lr set how --train")):
        with pytest.raises(SystemExit) as e:
            bench.main(["--photos", str(tmp_path), *args])
        assert e.value.code == 2 and needs in capsys.readouterr().err


def test_cli_trains_briefly_and_prints_one_row_per_curve_and_synthesis(tmp_path, capsys, tiny_checkpoint):
    bench = load_bench("tone_curve")
    rng = np.random.default_rng(0)
    for folder in ("train", "held"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    bench.main(["--photos", str(tmp_path / "held"), "--train", str(tmp_path / "train"), "--minutes", "0.01",
                "--batch", "2", "--crop", "64", "--gates=-1000,1000", "--oracle", "--loop", str(tiny_checkpoint),
                "--assess-gate", "-1"])
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    gated = [f"estimated, logit ≥ {g}{a}" for g in ("-1000", "1000") for a in ("", " and assessed low light ≥ -1.0")]
    labels = ["oracle lut", "oracle affine", "estimated, always", *gated, "the loop alone",
              *(f"{g}, then the loop" for g in gated)]
    assert [r[0] for r in rows[1:]] == labels * 2
    assert [r[1] for r in rows[1:]] == ["v2"] * len(labels) + ["albumentations"] * len(labels)
    row = {(r[0], r[1]): r[2:] for r in rows[1:]}
    for syn in ("v2", "albumentations"):  # a gate every logit passes is "always"; one none passes, the input
        always = row["estimated, always", syn]
        assert row["estimated, logit ≥ -1000", syn] == always
        assert row["estimated, logit ≥ -1000 and assessed low light ≥ -1.0", syn] == always
        assert all(v in ("+0.00", "-0.00") for v in row["estimated, logit ≥ 1000", syn])
        assert row["estimated, logit ≥ 1000, then the loop", syn] == row["the loop alone", syn]
    clean = rows[0].index("clean")
    assert all(r[clean] in ("+0.00", "-0.00") for r in rows[1:] if r[0] == "oracle affine")  # a clean crop maps to itself
