"""Device profiles: how long each entry point takes on a device, per input (tile) size.

A profile is JSON (``FORMAT``): device, backend (and onnxruntime's providers), bundle it was measured
with, ``method`` ("measured" on that device, or "estimated" with its ``basis``), date, package version, and
per size "HxW" the median and p90 milliseconds of ``encode``, ``assess``, ``restore``, ``decode`` (one
tile) and, where measured, ``overhead``: the runtime's own work per tile and pass (the scheduler charges it
per tile and step).
``rar-edge profile`` measures the device it runs on; docs/runtime.md maps phone tools' reports onto the same fields.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rar_edge import __version__
from rar_edge.atomic import atomic_path
from rar_edge.errors import RarEdgeError

FORMAT = "rar_edge.device_profile"
FORMAT_VERSION = 1
ENTRY_POINTS = ("encode", "assess", "restore", "decode")


@dataclass
class DeviceProfile:
    device: str
    backend: str
    method: str  # "measured" | "estimated"
    sizes: dict[str, dict[str, dict[str, float]]]  # "HxW" -> entry -> {"median_ms", "p90_ms"}
    basis: str = ""  # how an estimate was made, or the measurement set-up
    bundle: dict = field(default_factory=dict)  # preset, precision, target
    date: str = ""
    package_version: str = __version__
    #: onnxruntime's execution providers the times were measured on, in order ([] for other backends).
    providers: list = field(default_factory=list)

    def entry_ms(self, tile: tuple[int, int]) -> dict[str, float]:
        """p90 ms per entry point at ``tile``: the nearest measured size, scaled by pixel count."""
        target = tile[0] * tile[1]

        def pixels(key: str) -> int:
            h, w = key.split("x")
            return int(h) * int(w)

        key = min(self.sizes, key=lambda k: abs(np.log(pixels(k) / target)))
        scale = target / pixels(key)
        return {e: v["p90_ms"] * scale for e, v in self.sizes[key].items()}

    def to_json(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}


def parse_profile(data: dict, source: str = "profile") -> DeviceProfile:
    """Validate a profile's JSON; a one-line RarEdgeError says what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RarEdgeError(f"{source} is not a rar_edge device profile (format {FORMAT!r} missing)")
    if data.get("format_version") != FORMAT_VERSION:
        raise RarEdgeError(f"{source}: profile format version {data.get('format_version')!r} is not {FORMAT_VERSION}")
    for key in ("device", "backend"):
        if not isinstance(data.get(key), str):
            raise RarEdgeError(f"{source}: '{key}' must be a string naming the {key} measured")
    for key in ("basis", "date", "package_version"):
        if key in data and not isinstance(data[key], str):
            raise RarEdgeError(f"{source}: '{key}' must be a string")
    if "providers" in data and not (isinstance(data["providers"], list)
                                    and all(isinstance(p, str) for p in data["providers"])):
        raise RarEdgeError(f"{source}: 'providers' must be a list of onnxruntime provider names")
    if "bundle" in data and not isinstance(data["bundle"], dict):
        raise RarEdgeError(f"{source}: 'bundle' must be an object (preset, precision, target)")
    if data.get("method") not in ("measured", "estimated"):
        raise RarEdgeError(f"{source}: method must be 'measured' or 'estimated'")
    sizes = data.get("sizes")
    if not isinstance(sizes, dict) or not sizes:
        raise RarEdgeError(f"{source}: 'sizes' must map 'HxW' to per-entry-point timings")
    for key, entries in sizes.items():
        parts = key.split("x")
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
            raise RarEdgeError(f"{source}: size key {key!r} is not 'HxW'")
        for e in ENTRY_POINTS:
            t = entries.get(e) if isinstance(entries, dict) else None
            if not isinstance(t, dict) or not all(
                    isinstance(t.get(k), (int, float)) and np.isfinite(t[k]) and t[k] >= 0 for k in ("median_ms", "p90_ms")):
                raise RarEdgeError(f"{source}: size {key} lacks finite median_ms/p90_ms for {e}")
    known = {f for f in DeviceProfile.__dataclass_fields__}
    return DeviceProfile(**{k: v for k, v in data.items() if k in known})


def load_profile(path: str | Path) -> DeviceProfile:
    """A profile file, or a shipped profile by name (rar_edge/runtime/profiles/NAME.json)."""
    path = Path(path)
    if not path.exists() and path.suffix == "":
        shipped = Path(__file__).parent / "profiles" / f"{path.name}.json"
        if shipped.exists():
            path = shipped
        else:
            names = sorted(p.stem for p in (Path(__file__).parent / "profiles").glob("*.json"))
            raise RarEdgeError(f"no profile file or shipped profile named {path}; shipped: {', '.join(names) or 'none'}")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RarEdgeError(f"profile {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RarEdgeError(f"profile {path} is not valid JSON ({e})") from None
    return parse_profile(data, str(path))


def save_profile(profile: DeviceProfile, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(profile.to_json(), indent=1) + "\n")
