"""A reader for Qt's binary resource files (``.rcc``): the files GCompris keeps its photographs in.

Format (Qt's ``rcc`` tool, versions 1-3): a header ``b"qres"``, then big-endian u32 version,
tree offset, data offset, names offset (and, from version 3, u32 flags). The tree is an array of
fixed-size nodes, the root first: name offset (u32), flags (u16: 1 zlib, 2 directory, 4 zstd),
then for a directory the child count and the index of its first child (u32 each), for a file the
locale (u16 country, u16 language) and its data offset (u32); from version 2 each node carries an
8-byte modification time. A name is u16 length, u32 hash, then UTF-16-BE characters; a payload is
u32 size then the bytes, zlib ones in ``qCompress`` form (u32 uncompressed size, then a zlib stream).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from rar_edge.errors import RarEdgeError

_COMPRESSED, _DIRECTORY, _COMPRESSED_ZSTD = 1, 2, 4


def read_rcc(path: str | Path) -> dict[str, bytes]:
    """Every file of a Qt resource file, as ``{"dir/name.ext": bytes}``.

    Raises RarEdgeError naming the file when it is not a resource file, is cut short, or holds
    zstd-compressed entries (GCompris uses zlib or none).
    """
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise RarEdgeError(f"cannot read Qt resource file {path}: {e.strerror}") from None
    try:
        return _parse(blob)
    except RarEdgeError as e:
        raise RarEdgeError(f"{path}: {e}; download the package again") from None
    except (struct.error, IndexError, zlib.error, UnicodeDecodeError, RecursionError) as e:
        raise RarEdgeError(f"{path} is a damaged Qt resource file ({type(e).__name__}: {e}); "
                           "download the package again") from None


def _parse(blob: bytes) -> dict[str, bytes]:
    if blob[:4] != b"qres":
        raise RarEdgeError("not a Qt resource file (no 'qres' header)")
    version, tree, data, names = struct.unpack_from(">IIII", blob, 4)
    if version not in (1, 2, 3):
        raise RarEdgeError(f"unsupported Qt resource version {version}")
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", blob, names + offset)
        start = names + offset + 6  # u16 length, u32 hash
        raw = blob[start : start + 2 * length]
        if len(raw) != 2 * length:
            raise IndexError("name runs past the end of the file")
        return raw.decode("utf-16-be")

    def payload(offset: int, flags: int) -> bytes:
        (size,) = struct.unpack_from(">I", blob, data + offset)
        raw = blob[data + offset + 4 : data + offset + 4 + size]
        if len(raw) != size:
            raise IndexError("payload runs past the end of the file")
        if flags & _COMPRESSED_ZSTD:
            raise RarEdgeError("zstd-compressed Qt resources are not supported")
        if flags & _COMPRESSED:
            return zlib.decompress(raw[4:])  # qCompress: u32 uncompressed size, then zlib
        return raw

    out: dict[str, bytes] = {}

    def walk(index: int, prefix: str, depth: int) -> None:
        if depth > 64:
            raise RecursionError("directory tree deeper than 64 levels")
        at = tree + index * node_size
        name_off, flags = struct.unpack_from(">IH", blob, at)
        name = name_at(name_off) if index else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack_from(">II", blob, at + 6)
            for child in range(first, first + count):
                walk(child, f"{prefix}{name}/" if name else prefix, depth + 1)
        else:
            (offset,) = struct.unpack_from(">I", blob, at + 10)
            out[prefix + name] = payload(offset, flags)

    walk(0, "", 0)
    return out
