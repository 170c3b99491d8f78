"""Rewrite an exported bundle in place, whole or not at all: its manifest changed (and files added or removed),
the manifest re-embedded in the entry points' ONNX graphs, every checksum taken again, the result verified.

``rar-edge fit-stop --bundle B --write`` stores a fitted stop rule this way (export/stop_rule.py), and
``python -m rar_edge.export --add-tone B`` the exposure stage (export/tone.py). The new bundle is written beside
the old one and swapped in: a failure leaves the old bundle as it was. Core ML bundles are not rewritten (their
metadata needs coremltools' spec round trip): the caller says what to do instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from rar_edge.errors import RarEdgeError
from rar_edge.manifest import sha256, verify_bundle, write_manifest


def rewrite_bundle(bundle: str | Path, change: Callable[[Path, dict], dict], what: str, coreml: str) -> dict:
    """Apply ``change(copy, manifest) -> new manifest`` to a copy of ``bundle`` and swap it in; returns the new
    manifest. ``change`` edits the copy's files and lists every file the bundle then holds in the new manifest's
    ``artifacts`` (their checksums are taken here). ``what`` names the change in errors; ``coreml`` is the error
    for a Core ML bundle (``{bundle}`` is filled in)."""
    from rar_edge.atomic import atomic_dir

    bundle = Path(bundle).resolve()  # "." or "..": the new bundle is written beside the folder, not inside it
    try:
        manifest = verify_bundle(bundle)
    except ValueError as e:
        raise RarEdgeError(str(e)) from None
    if manifest["target"] == "coreml":
        raise RarEdgeError(coreml.format(bundle=bundle))
    with atomic_dir(bundle) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
        manifest = change(tmp, manifest)
        # the entry points' graphs carry the manifest (the tone graph carries only its own entry: export/tone.py)
        onnx_files = sorted(f"{n}.onnx" for n in manifest["entry_points"] if f"{n}.onnx" in manifest["artifacts"])
        if onnx_files:
            from .onnx import embed_metadata

            embed_metadata(tmp, onnx_files, manifest)
        manifest["artifacts"] = {f: sha256(tmp / f) for f in manifest["artifacts"]}
        write_manifest(tmp, manifest)
        try:  # checked before the swap: a bundle the runtime would refuse never replaces a working one
            verify_bundle(tmp)
        except ValueError as e:
            raise RarEdgeError(f"{what} does not make a valid bundle ({e}); {bundle} was left as it was") from None
    return manifest
