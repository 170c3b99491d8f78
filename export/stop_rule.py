"""Store a stop rule fitted on a bundle's own graphs (``rar-edge fit-stop --bundle B --write``) in that bundle.

The rule lives in the manifest (``quality``: the loop defaults, the judge and the clean gate the runtime reads)
and, for ONNX, in every graph's metadata_props too (the manifest's contract: the same key/values in each
artifact); the artifacts' checksums are taken again. The new bundle is written beside the old one and swapped
in: a failure leaves the old bundle as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rar_edge.errors import RarEdgeError
from rar_edge.loop import Judge, StopRule
from rar_edge.manifest import sha256, verify_bundle, write_manifest

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
    from rar_edge.atomic import atomic_dir

    bundle = Path(bundle).resolve()  # "." or "..": the new bundle is written beside the folder, not inside it
    try:
        manifest = verify_bundle(bundle)
    except ValueError as e:
        raise RarEdgeError(str(e)) from None
    if manifest["target"] == "coreml":  # re-embedding needs coremltools' spec round trip: not done here
        raise RarEdgeError(COREML_REWRITE.format(bundle=bundle))
    manifest = {**manifest, "quality": rule_quality(manifest["quality"], rule, judge), "stop_rule_fit": record}
    with atomic_dir(bundle) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
        # the entry points' graphs carry the manifest (the tone graph carries only its own entry: export/tone.py)
        onnx_files = sorted(f"{n}.onnx" for n in manifest["entry_points"] if f"{n}.onnx" in manifest["artifacts"])
        if onnx_files:
            from .onnx import embed_metadata

            embed_metadata(tmp, onnx_files, manifest)
        manifest["artifacts"] = {f: sha256(tmp / f) for f in manifest["artifacts"]}
        write_manifest(tmp, manifest)
        try:  # checked before the swap: a rule the runtime would refuse never replaces a working bundle
            verify_bundle(tmp)
        except ValueError as e:
            raise RarEdgeError(f"the fitted rule does not make a valid bundle ({e}); {bundle} was left as it was") from None
    return manifest
