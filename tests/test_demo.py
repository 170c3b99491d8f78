"""make demo's bundles: exported once per version of the shipped weights, again when the weights change."""

from __future__ import annotations

import rar_edge.export.__main__ as export_entry
import rar_edge.manifest
from rar_edge import demo


def test_demo_reexports_when_the_shipped_weights_change(tmp_path, monkeypatch):
    calls = []

    def fake_export(argv):
        calls.append(argv[argv.index("--target") + 1])
        return 0

    monkeypatch.setattr(export_entry, "main", fake_export)
    monkeypatch.setattr(rar_edge.manifest, "verify_bundle", lambda bundle: {})  # every bundle "verifies"
    out = tmp_path / "bundles"
    out.mkdir()

    demo.export_bundles(out, ("onnx", "executorch"))
    assert calls == ["onnx", "executorch"]  # no stamp yet: exported
    assert (out / "rar-edge-s-int8-onnx.weights-sha256").read_text().strip() == demo.weights_digest()

    demo.export_bundles(out, ("onnx", "executorch"))
    assert calls == ["onnx", "executorch"]  # same weights: reused

    monkeypatch.setattr(demo, "weights_digest", lambda: "0" * 64)  # the shipped weights changed
    demo.export_bundles(out, ("onnx",))
    assert calls == ["onnx", "executorch", "onnx"]
    assert (out / "rar-edge-s-int8-onnx.weights-sha256").read_text().strip() == "0" * 64
