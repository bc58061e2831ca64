"""Hand-assembled pickles (protocol 2 opcodes, as torch.save writes them) and torch-style archives for the checkpoint
tests: honest ones, and hostile ones that run code, crash numpy, poison torch or declare huge sizes."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

MARK, TUPLE, REDUCE, BUILD, NEWOBJ, PERSID = b"(", b"t", b"R", b"b", b"\x81", b"Q"
NONE, TRUE, FALSE, EMPTY_DICT, SETITEM, STOP = b"N", b"\x88", b"\x89", b"}", b"s", b"."
PROTO = b"\x80\x02"


def text(value: str) -> bytes:
    data = value.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data


def integer(value: int) -> bytes:
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    size = (value.bit_length() + 8) // 8
    return b"\x8a" + bytes([size]) + value.to_bytes(size, "little", signed=True)


def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` through REDUCE."""
    return func + MARK + b"".join(args) + TUPLE + REDUCE


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def raw(data: str) -> bytes:
    """bytes as protocol 2 pickles them: ``_codecs.encode(str, 'latin1')``."""
    return call(glob("_codecs", "encode"), text(data), text("latin1"))


def dtype(typestr: str, flags: int | None = None, endian: str = "<") -> bytes:
    """``numpy.dtype(typestr)`` as numpy pickles it; ``flags`` adds the BUILD that sets its state."""
    made = call(glob("numpy", "dtype"), text(typestr), FALSE, TRUE)
    if flags is None:
        return made
    state = tup(integer(3), text(endian), NONE, NONE, NONE, integer(-1), integer(-1), integer(flags))
    return made + state + BUILD


def tensor(key: str, numel: int, shape: tuple[int, ...]) -> bytes:
    """``_rebuild_tensor_v2`` of a float32 storage ``key`` (zip format) as torch.save writes it."""
    pid = tup(text("storage"), glob("torch", "FloatStorage"), text(key), text("cpu"), integer(numel)) + PERSID
    stride = tuple(int(n) for n in _strides(shape))
    return call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        pid,
        integer(0),
        tup(*map(integer, shape)),
        tup(*map(integer, stride)),
        FALSE,
        call(glob("collections", "OrderedDict")),
    )


def _strides(shape: tuple[int, ...]) -> list[int]:
    out, step = [], 1
    for n in reversed(shape):
        out.append(step)
        step *= n
    return out[::-1]


def checkpoint_pickle(value: bytes) -> bytes:
    """``{'state_dict': {}, 'x': value}``."""
    return PROTO + EMPTY_DICT + text("state_dict") + EMPTY_DICT + SETITEM + text("x") + value + SETITEM + STOP


def torch_zip(path: Path, data_pkl: bytes, members: dict[str, bytes] | None = None, deflate: bool = False) -> Path:
    """A torch.save-style archive: ``archive/data.pkl`` and the tensor data members ``archive/data/<key>``."""
    how = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl)
        archive.writestr("archive/version", "3\n")
        for key, data in (members or {}).items():
            archive.writestr(f"archive/data/{key}", data, compress_type=how)
    return path


def legacy_file(path: Path, numel: int, data: bytes) -> Path:
    """torch's legacy (non-zip) format, as mmdet's model-zoo checkpoints are saved: magic number, protocol, system
    info, ``{'w': tensor}`` whose storage declares ``numel`` float32 values, the storage keys, then the raw data."""
    pid = tup(text("storage"), glob("torch", "FloatStorage"), text("0"), text("cpu"), integer(numel), NONE) + PERSID
    rebuilt = call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        pid,
        integer(0),
        tup(integer(len(data) // 4)),
        tup(integer(1)),
        FALSE,
        call(glob("collections", "OrderedDict")),
    )
    parts = [
        PROTO + integer(0x1950A86A20F9469CFC6C) + STOP,
        PROTO + integer(1001) + STOP,
        PROTO + EMPTY_DICT + text("little_endian") + TRUE + SETITEM + STOP,
        PROTO + EMPTY_DICT + text("w") + rebuilt + SETITEM + STOP,
        PROTO + b"]" + text("0") + b"a" + STOP,
        struct.pack("<q", len(data) // 4) + data,
    ]
    path.write_bytes(b"".join(parts))
    return path


# ---- hostile values (each the 'x' of checkpoint_pickle) ----

SEGFAULT = call(glob("numpy.core.multiarray", "scalar"), dtype("O8", flags=0, endian="|"), raw("A" * 8))
POISON = (
    glob("torch._utils", "_rebuild_tensor_v2")
    + NONE
    + EMPTY_DICT
    + text("__defaults__")
    + EMPTY_DICT
    + text("neg")
    + TRUE
    + SETITEM
    + b"\x85"  # TUPLE1: ({'neg': True},)
    + SETITEM
    + b"\x86"  # TUPLE2: (None, {'__defaults__': ...}): the slot state, set with setattr
    + BUILD
)
HUGE_BYTEARRAY = call(glob("builtins", "bytearray"), integer(3_000_000_000))
