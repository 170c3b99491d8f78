"""Store a stop rule fitted on a bundle's own graphs (``rar-edge fit-stop --bundle B --write``) in that bundle.

The rule lives in the manifest (``quality``: the loop defaults, the judge and the clean gate the runtime reads)
and, for ONNX, in every entry point's metadata_props too (the manifest's contract: the same key/values in each
graph); export/rewrite.py rewrites the bundle whole or not at all.
"""

from __future__ import annotations

from pathlib import Path

from rar_edge.loop import Judge, StopRule

#: Why ``--write`` does not store a rule in a Core ML bundle (its metadata would need coremltools' round trip).
COREML_REWRITE = ("{bundle} is a Core ML bundle: fit its checkpoint (rar-edge fit-stop --checkpoint --write) and "
                  "export it again")


def rule_quality(quality: dict, rule: StopRule, judge: Judge | None) -> dict:
    """A manifest's ``quality`` section with ``rule`` as its loop defaults, ``judge`` (when the rule asks it:
    min_better > 0) and the rule's learned gate; its other keys (meaning, cap) as they were."""
    kept = {k: v for k, v in quality.items() if k not in ("defaults", "judge", "gate")}
    defaults = {k: v for k, v in rule.to_dict().items() if k != "gate"}
    return {**kept, "defaults": defaults,
            **({"judge": judge.to_dict()} if judge is not None and rule.min_better > 0 else {}),
            **({"gate": rule.gate.to_dict()} if rule.gate is not None else {})}


def store_stop_rule(bundle: str | Path, rule: StopRule, judge: Judge | None, record: dict) -> dict:
    """Write ``rule`` (with ``judge``) into ``bundle`` as its loop defaults, and ``record`` (how it was fitted)
    as the manifest's ``stop_rule_fit``; returns the new manifest."""
    from .rewrite import rewrite_bundle

    def change(copy: Path, manifest: dict) -> dict:
        return {**manifest, "quality": rule_quality(manifest["quality"], rule, judge), "stop_rule_fit": record}

    return rewrite_bundle(bundle, change, "the fitted rule", COREML_REWRITE)
