"""Machine-independent paths for files that ship or outlive the machine (configs, manifests). Torch-free."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The folder that holds the ``rar_edge`` package (the repository, or site-packages once installed).
PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def portable(value: Any, root: Path | None = None) -> Any:
    """``value`` with every absolute path made machine-independent: relative to ``root`` (the working
    folder) when inside it, else its last three parts (``runs/teacher4/last``). Nested dicts and lists too."""
    root = Path.cwd() if root is None else root
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(portable(v, root) for v in value)
    if isinstance(value, str) and value.startswith("/") and "\n" not in value:
        path = Path(value)
        try:
            return str(path.relative_to(root))
        except ValueError:
            return str(Path(*path.parts[-3:])) if len(path.parts) > 3 else str(Path(*path.parts[1:]))
    return value


def source_name(path: str | Path) -> str:
    """How a manifest names the checkpoint a bundle came from: ``rar_edge/weights/<name>`` for the shipped
    weights (the same in a checkout and an installed wheel), else ``portable``'s name."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(PACKAGE_ROOT).as_posix()
    except ValueError:
        return portable(str(resolved))
