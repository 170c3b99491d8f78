"""The bundle manifest contract (torch-free: export writes it, the runtime reads it): one JSON per bundle,
the same key/values embedded in each artifact's metadata."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

from rar_edge import __version__
from rar_edge.atomic import recover_dir
from rar_edge.loop import KEEP_CHOICES, QUALITY_CAP_DB, QUALITY_MEANING
from rar_edge.paths import source_name

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
                                 "min_gain": config.min_gain, "min_change": config.min_change,
                                 "keep": config.keep, "min_better": config.min_better,
                                 "min_detect": config.min_detect},
                    **({"judge": config.judge_head.to_dict()} if config.judge_head else {}),
                    **({"gate": config.gate_head.to_dict()} if config.gate_head else {})},
        "entry_points": signatures(config),
        "quantization": quantization,
        "source": source_name(source) if source else source,
        "export_date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "artifacts": {},
        "parity": {},
    }


def flat_metadata(manifest: dict) -> dict[str, str]:
    """The manifest as string key/values for formats whose metadata is a flat string map."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in manifest.items() if k not in ("artifacts",)}


def write_manifest(bundle: Path, manifest: dict) -> None:
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def _positive_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _inside(name) -> bool:
    """A relative path that stays inside the bundle."""
    return isinstance(name, str) and bool(name) and not Path(name).is_absolute() and ".." not in Path(name).parts


def check_manifest(manifest, where: str = "manifest") -> dict:
    """Validate the fields the runtime reads; raise ValueError naming the first bad one."""
    def bad(field: str, want: str):
        raise ValueError(f"{where}: {field} must be {want}; the bundle is damaged: re-export it")

    if not isinstance(manifest, dict):
        raise ValueError(f"{where} is not a JSON object; the bundle is damaged: re-export it")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        bad("schema_version", "an integer")
    if version > SCHEMA_VERSION:
        raise ValueError(f"{where}: schema {version} is newer than this rar_edge {__version__} reads "
                         f"({SCHEMA_VERSION}): upgrade rar_edge")
    if version != SCHEMA_VERSION:
        raise ValueError(f"{where}: schema {version} is older than {SCHEMA_VERSION}; re-export the bundle "
                         "with this rar_edge version")
    for key in ("target", "precision", "preset"):
        if not isinstance(manifest.get(key), str):
            bad(key, "a string")
    shape = manifest.get("input_shape", "missing")
    if shape is not None and not (isinstance(shape, list) and len(shape) == 2 and all(map(_positive_int, shape))):
        bad("input_shape", "null or [height, width]")
    if not isinstance(manifest.get("dynamic"), bool):
        bad("dynamic", "true or false")
    for key in ("size_multiple", "latent_stride", "latent_channels", "cond_dim"):
        if not _positive_int(manifest.get(key)):
            bad(key, "a positive integer")
    degradations = manifest.get("degradations")
    if not isinstance(degradations, list) or not degradations or not all(isinstance(d, str) for d in degradations):
        bad("degradations", "a list of names")
    defaults = manifest.get("quality", {}).get("defaults") if isinstance(manifest.get("quality"), dict) else None
    if not isinstance(defaults, dict) or not (
            isinstance(defaults.get("max_steps"), int) and not isinstance(defaults.get("max_steps"), bool)
            and defaults["max_steps"] >= 0 and _number(defaults.get("target_quality"))
            and _number(defaults.get("min_gain"))):
        bad("quality.defaults", "{max_steps, target_quality, min_gain} numbers")
    # min_change and keep came later (bundles without them run with 0 and "best": the rule before them).
    if "min_change" in defaults and not (_number(defaults["min_change"]) and defaults["min_change"] >= 0):
        bad("quality.defaults.min_change", "a number >= 0")
    if "keep" in defaults and defaults["keep"] not in KEEP_CHOICES:
        bad("quality.defaults.keep", f"one of {list(KEEP_CHOICES)}")
    # The judge came later still (bundles without it never ask it).
    if "min_better" in defaults and not (_number(defaults["min_better"]) and 0 <= defaults["min_better"] < 1):
        bad("quality.defaults.min_better", "a probability in [0, 1)")
    # And the clean gate after it (bundles without it step on any input the other rules let through).
    if "min_detect" in defaults and not (_number(defaults["min_detect"]) and 0 <= defaults["min_detect"] < 1):
        bad("quality.defaults.min_detect", "a probability in [0, 1)")
    # The judge and the learned clean gate (after it): logistic heads, each weight count fixed by the model.
    heads = {"judge": ("two assessments and a step size",
                       2 * (1 + len(degradations) + manifest["cond_dim"]) + 1  # loop.Judge's features
                       if _positive_int(manifest.get("cond_dim")) and isinstance(degradations, list) else None),
             "gate": ("one per degradation", len(degradations) if isinstance(degradations, list) else None)}
    for name, (what, count) in heads.items():
        head = manifest["quality"].get(name)
        if head is not None and not (isinstance(head, dict) and isinstance(head.get("weights"), list)
                                     and all(_number(w) for w in head["weights"]) and _number(head.get("bias"))):
            bad(f"quality.{name}", "{weights: [numbers], bias: number}")
        if head is not None and count is not None and len(head["weights"]) != count:
            bad(f"quality.{name}.weights", f"{count} numbers for this model ({what})")
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, dict) or not artifacts:
        bad("artifacts", "a map of file name to SHA-256")
    # The exposure stage came later (bundles without it tone with the shipped head): its graph and its head's
    # files inside the bundle and under its checksums, and a gate.
    tone = manifest.get("tone")
    if tone is not None:
        if not isinstance(tone, dict):
            bad("tone", "an object")
        from rar_edge.runtime.tone import CONFIG, WEIGHTS  # the head's file names: one place (numpy only)

        head = tone.get("head")
        if not (_inside(head) and Path(head) != Path(".") and {f"{head}/{CONFIG}", f"{head}/{WEIGHTS}"}
                <= set(artifacts)):
            bad("tone.head", f"a folder inside the bundle whose {CONFIG} and {WEIGHTS} are artifacts")
        if not (_inside(tone.get("graph")) and tone["graph"] in artifacts):
            bad("tone.graph", "an artifact of the bundle")
        if not _number(tone.get("gate")):
            bad("tone.gate", "a number")
    for name, digest in artifacts.items():
        if not _inside(name) or not isinstance(digest, str):
            bad(f"artifact {name!r}", "a file name inside the bundle with a SHA-256 string")
    return manifest


def verify_bundle(bundle: str | Path) -> dict:
    """Read a bundle's manifest, check its fields and every artifact's SHA-256; raise ValueError on damage."""
    bundle = recover_dir(bundle)
    path = bundle / MANIFEST
    if not Path(bundle).exists():
        raise ValueError(f"{bundle} does not exist; pass a bundle folder (python -m rar_edge.export writes one)")
    if not path.is_file():
        raise ValueError(f"{bundle} is not a bundle: {MANIFEST} is missing; export one with python -m rar_edge.export")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{bundle}: {MANIFEST} is not readable JSON ({type(e).__name__}); re-export the bundle") from None
    check_manifest(manifest, f"{bundle}/{MANIFEST}")
    for name, digest in manifest["artifacts"].items():
        art = bundle / name
        if not art.exists():
            raise ValueError(f"{bundle}: artifact {name!r} is missing; re-export the bundle")
        if sha256(art) != digest:
            raise ValueError(f"{bundle}: artifact {name!r} fails its SHA-256 check (damaged or changed); re-export the bundle")
    return manifest
