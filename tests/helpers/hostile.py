"""Hostile checkpoints, built in memory: zip bombs, legacy pickles, oversized safetensors headers.

Importable from a subprocess too (the memory tests run an exploit in a fresh interpreter).
"""

from __future__ import annotations

import collections
import json
import pickle
import struct
import zlib
from dataclasses import dataclass

import torch

CHUNK = 1 << 24  # deflated zeros are built from 16 MiB pieces that compress to identical bytes


@dataclass(frozen=True)
class Member:
    """One file of a zip archive: `data` as stored, `size` and `crc` of what it unpacks to."""

    name: str
    data: bytes | None  # None: `size` zero bytes, stored (see write_sparse_zip)
    size: int
    crc: int
    method: int  # 0 stored, 8 deflated


def stored(name: str, data: bytes) -> Member:
    return Member(name, data, len(data), zlib.crc32(data), 0)


def deflated_zeros(name: str, size: int) -> Member:
    """`size` zero bytes (a multiple of 16 MiB), deflated about 1000 to 1, without holding them."""
    assert size % CHUNK == 0
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
    zeros = bytes(CHUNK)
    piece = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)  # the same bytes for every piece
    crc = 0
    for _ in range(size // CHUNK):
        crc = zlib.crc32(zeros, crc)
    return Member(name, piece * (size // CHUNK) + compressor.flush(), size, crc, 8)


def _zip_pieces(members: list[Member]) -> list[bytes | int]:
    """A plain zip archive (no zip64) of `members`, written by hand so sizes can be whatever a test needs.

    Bytes to write, or an int: that many zero bytes (a member whose `data` is None), left as a hole.
    """
    pieces: list[bytes | int] = []
    directory, offset = [], 0
    for m in members:
        name = m.name.encode()
        stored_size = m.size if m.data is None else len(m.data)
        fields = struct.pack("<HHHHHLLLHH", 20, 0, m.method, 0, 0x21, m.crc, stored_size, m.size, len(name), 0)
        directory.append(b"PK\x01\x02" + struct.pack("<H", 20) + fields + struct.pack("<HHHLL", 0, 0, 0, 0, offset) + name)
        pieces += [b"PK\x03\x04" + fields + name, m.size if m.data is None else m.data]
        offset += 30 + len(name) + stored_size
    directory_bytes = b"".join(directory)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(directory_bytes), offset, 0)
    return pieces + [directory_bytes, end]


def zip_archive(members: list[Member]) -> bytes:
    return b"".join(piece if isinstance(piece, bytes) else bytes(piece) for piece in _zip_pieces(members))


def write_sparse_zip(path, members: list[Member]) -> None:
    """`zip_archive(members)` into the file `path`, members without data as holes: gigabytes in no disk space."""
    with open(path, "wb") as handle:
        for piece in _zip_pieces(members):
            handle.write(piece) if isinstance(piece, bytes) else handle.seek(piece, 1)


def stored_zeros(name: str, size: int) -> Member:
    """`size` zero bytes stored as they are; written by `write_sparse_zip` as a hole."""
    crc, zeros = 0, bytes(CHUNK)
    for start in range(0, size, CHUNK):
        crc = zlib.crc32(zeros[: min(CHUNK, size - start)], crc)
    return Member(name, None, size, crc, 0)


class _Storage:
    def __init__(self, numel: int) -> None:
        self.numel = numel


class _Tensor:
    """Pickles like a torch uint8 tensor over storage "0" of `numel` bytes."""

    def __init__(self, numel: int) -> None:
        self.numel = numel

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2,
                (_Storage(self.numel), 0, (self.numel,), (1,), False, collections.OrderedDict()))


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.ByteStorage, "0", "cpu", obj.numel) if isinstance(obj, _Storage) else None


def torch_data_pickle(numel: int) -> bytes:
    """data.pkl of a torch checkpoint {"weight": a uint8 tensor of `numel` elements in storage "0"}."""
    import io

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=2).dump({"weight": _Tensor(numel)})
    return buffer.getvalue()


def zip_bomb(declared: int = 1 << 30) -> bytes:
    """A torch checkpoint of about declared/230 bytes whose one tensor unpacks to `declared` zero bytes."""
    return zip_archive(torch_checkpoint_members(deflated_zeros("archive/data/0", declared)))


def torch_checkpoint_members(data: Member) -> list[Member]:
    """The members of a torch checkpoint {"weight": a uint8 tensor} whose storage is `data`."""
    return [stored("archive/data.pkl", torch_data_pickle(data.size)), stored("archive/byteorder", b"little"), data,
            stored("archive/version", b"3\n")]


def many_members(count: int) -> bytes:
    """A zip archive of `count` empty members: a central directory that is expensive to parse."""
    return zip_archive([stored(f"archive/data/{i}", b"") for i in range(count)])


def safetensors_bytes(header: dict, payload: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + raw + payload


def many_entries(count: int) -> bytes:
    """A safetensors file of `count` zero-size tensors: tens of megabytes of header, no data."""
    return safetensors_bytes({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(count)})
