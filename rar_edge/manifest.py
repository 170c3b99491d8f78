"""The bundle manifest contract (torch-free: export writes it, the runtime reads it): one JSON per bundle,
the same key/values embedded in each artifact's metadata."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from rar_edge import __version__
from rar_edge.atomic import recover_dir
from rar_edge.loop import QUALITY_CAP_DB, QUALITY_MEANING

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


def sha256(path: str | Path) -> str:
    """SHA-256 of a file, or of every file in a folder (an .mlpackage) in sorted relative-path order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def signatures(config) -> dict:
    """Entry-point names, inputs and outputs ('H', 'W': image size; 'h', 'w': latent size = H/stride)."""
    c = config
    latent = ["N", c.latent_channels, "h", "w"]
    return {
        "encode": {"inputs": {"image": ["N", 3, "H", "W"]}, "outputs": {"latent": latent}},
        "assess": {"inputs": {"latent": latent},
                   "outputs": {"quality": ["N"], "degradations": ["N", len(c.degradations)], "cond": ["N", c.cond_dim]}},
        "restore": {"inputs": {"latent": latent, "cond": ["N", c.cond_dim]}, "outputs": {"next_latent": latent}},
        "decode": {"inputs": {"latent": latent}, "outputs": {"image": ["N", 3, "H", "W"]}},
    }


def build_manifest(config, preset: str, precision: str, target: str, input_shape: tuple[int, int] | None,
                   dynamic: bool, source: str, quantization: dict | None = None) -> dict:
    """Everything but the artifacts' checksums and the parity figures (added once they exist)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "package_version": __version__,
        "preset": preset,
        "precision": precision,
        "target": target,
        "input_shape": list(input_shape) if input_shape else None,
        "dynamic": dynamic,
        "size_multiple": config.size_multiple,
        "latent_stride": config.stride,
        "latent_channels": config.latent_channels,
        "cond_dim": config.cond_dim,
        "degradations": list(config.degradations),
        "quality": {"meaning": QUALITY_MEANING, "cap_db": QUALITY_CAP_DB,
                    "defaults": {"max_steps": config.max_steps, "target_quality": config.target_quality,
                                 "min_gain": config.min_gain}},
        "entry_points": signatures(config),
        "quantization": quantization,
        "source": source,
        "export_date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "artifacts": {},
        "parity": {},
    }


def flat_metadata(manifest: dict) -> dict[str, str]:
    """The manifest as string key/values for formats whose metadata is a flat string map."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in manifest.items() if k not in ("artifacts",)}


def write_manifest(bundle: Path, manifest: dict) -> None:
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def verify_bundle(bundle: str | Path) -> dict:
    """Read a bundle's manifest and check schema and every artifact's SHA-256; raise ValueError on damage."""
    bundle = recover_dir(bundle)
    path = bundle / MANIFEST
    if not path.is_file():
        raise ValueError(f"{bundle} is not a bundle: {MANIFEST} is missing; export one with python -m rar_edge.export")
    manifest = json.loads(path.read_text())
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"{bundle}: manifest schema {manifest.get('schema_version')} is not {SCHEMA_VERSION}; "
                         "re-export it with this rar_edge version")
    for name, digest in manifest["artifacts"].items():
        art = bundle / name
        if not art.exists():
            raise ValueError(f"{bundle}: artifact {name} is missing; re-export the bundle")
        if sha256(art) != digest:
            raise ValueError(f"{bundle}: artifact {name} fails its SHA-256 check (damaged or changed); re-export the bundle")
    return manifest
