"""Checking a checkpoint file before anything of it is built (loads without ``trust_checkpoint``).

The scan reads the pickle's opcodes (``pickletools.genops``) and follows them on a stack of stand-in values, so it
knows what every REDUCE, NEWOBJ and BUILD would act on without building anything. It allows only what ``torch.save``
writes for weights plus what mmengine's training loop adds (numpy scalars and arrays of plain numbers, and
``HistoryBuffer`` objects, which are loaded as empty placeholders), and only the opcodes of torch's own
``weights_only`` unpickler. Sizes are bounded by the file: every zip member's declared size, every storage, every
``bytearray`` (see :data:`SLACK` and :func:`size_bound`). Nothing here imports torch or numpy.
"""

from __future__ import annotations

import pickletools
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["SLACK", "CheckpointRefused", "CheckpointUnreadable", "scan_checkpoint", "size_bound"]

SLACK = 1 << 20  # bytes a checkpoint may declare beyond twice its file size (a torch.save zip stores, never deflates)

_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
HISTORY_BUFFER = "mmengine.logging.history_buffer.HistoryBuffer"
STORAGE_ITEMSIZE = {
    **{f"torch.{n}Storage": 1 for n in ("Byte", "Char", "Bool", "Untyped", "QUInt8", "QInt8")},
    **{f"torch.{n}Storage": 2 for n in ("Half", "BFloat16", "Short")},
    **{f"torch.{n}Storage": 4 for n in ("Float", "Int", "QInt32")},
    **{f"torch.{n}Storage": 8 for n in ("Double", "Long", "ComplexFloat")},
    "torch.ComplexDoubleStorage": 16,
}
TORCH_VALUES = {f"torch.{n}" for n in ("float16", "bfloat16", "float32", "float64", "int8", "int16", "int32")} | {
    f"torch.{n}" for n in ("int64", "uint8", "bool", "complex64", "complex128")
}
_TORCH_OPS = {  # the opcodes torch's weights_only unpickler knows (torch/_weights_only_unpickler.py)
    "PROTO", "STOP", "GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "MARK",
    "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT",
    "EMPTY_SET", "BININT", "BININT1", "BININT2", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "BINPERSID", "BINGET",
    "LONG_BINGET", "BINPUT", "LONG_BINPUT", "LONG1",
}  # fmt: skip
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False, "EMPTY_TUPLE": ()}
_NUMPY_TYPESTR = re.compile(r"[biufc]\d{1,2}")  # bool, integer, float, complex: no objects, no structures


class CheckpointRefused(Exception):
    """The checkpoint needs something a load without trust does not do; the message says what (one clause)."""


class CheckpointUnreadable(Exception):
    """The checkpoint's zip archive or pickle is damaged; the message says where."""


def size_bound(file_size: int) -> int:
    """The most bytes a checkpoint of ``file_size`` bytes may declare: twice its size plus :data:`SLACK`."""
    return 2 * file_size + SLACK


class _Value:
    """What the scan knows of a value the pickle would build: its kind, a detail, and its items (dicts)."""

    __slots__ = ("built", "detail", "items", "kind")

    def __init__(self, kind: str, detail: Any = None) -> None:
        self.kind, self.detail, self.items, self.built = kind, detail, [], False


def _is_int(x: Any) -> bool:
    return type(x) is int


def _ints(x: Any) -> bool:
    return type(x) is tuple and all(_is_int(v) and v >= 0 for v in x)


def _kind(x: Any, *kinds: str) -> bool:
    return isinstance(x, _Value) and x.kind in kinds


class _PickleScan:
    """Follows one pickle's opcodes; refuses what a load without trust must not do (see the module docstring)."""

    def __init__(self, bound: int, file_size: int, storages: dict[str, int] | None) -> None:
        self.bound, self.file_size = bound, file_size
        self.storages = storages  # zip: declared size of each data/<key> member; None: legacy format
        self.legacy_bytes: dict[Any, int] = {}
        self.calls: dict[str, Callable[[tuple], Any]] = {
            "collections.OrderedDict": lambda a: _Value("odict") if a == () else self._bad("collections.OrderedDict"),
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor,
            "torch._utils._rebuild_parameter": self._rebuild_parameter,
            "torch.Size": lambda a: _Value("value") if len(a) == 1 and _ints(a[0]) else self._bad("torch.Size"),
            "torch.device": self._device,
            "_codecs.encode": self._encode,
            "builtins.set": lambda a: _Value("value") if len(a) == 1 and type(a[0]) is list else self._bad("set"),
            "builtins.complex": self._complex,
            "builtins.bytearray": self._bytearray,
            "builtins.getattr": self._getattr,
            "numpy.dtype": self._dtype,
            **{f"{m}.scalar": self._scalar for m in _MULTIARRAY},
            **{f"{m}._reconstruct": self._reconstruct for m in _MULTIARRAY},
        }
        self.names = {*self.calls, *STORAGE_ITEMSIZE, *TORCH_VALUES, "numpy.ndarray", HISTORY_BUFFER}

    @staticmethod
    def _bad(what: str) -> Any:
        raise CheckpointRefused(f"it calls {what} with arguments torch.save never writes")

    def _rebuild_tensor(self, a: tuple) -> _Value:
        if (
            len(a) in (6, 7)
            and _kind(a[0], "storage")
            and _is_int(a[1])
            and _ints(a[2])
            and _ints(a[3])
            and type(a[4]) is bool
            and _kind(a[5], "odict")
            and not a[5].items
            and (len(a) == 6 or a[6] is None or _kind(a[6], "dict"))
        ):
            return _Value("tensor")
        return self._bad("torch._utils._rebuild_tensor_v2")

    def _rebuild_parameter(self, a: tuple) -> _Value:
        if len(a) == 3 and _kind(a[0], "tensor") and type(a[1]) is bool and _kind(a[2], "odict") and not a[2].items:
            return _Value("tensor")
        return self._bad("torch._utils._rebuild_parameter")

    def _device(self, a: tuple) -> _Value:
        ok = 1 <= len(a) <= 2 and type(a[0]) is str and (len(a) == 1 or _is_int(a[1]))
        return _Value("value") if ok else self._bad("torch.device")

    def _complex(self, a: tuple) -> _Value:
        ok = len(a) == 2 and all(type(x) in (int, float) for x in a)
        return _Value("value") if ok else self._bad("complex")

    def _encode(self, a: tuple) -> _Value:
        if len(a) == 2 and type(a[0]) is str and a[1] in ("latin1", "latin-1"):
            return _Value("bytes", len(a[0]))
        return self._bad("_codecs.encode")  # other codecs (hex, base64...) can grow a string again and again

    def _bytearray(self, a: tuple) -> _Value:
        if len(a) == 1 and _is_int(a[0]) and a[0] > self.bound:
            raise CheckpointRefused(self._too_big(f"a bytearray of {a[0]} bytes", a[0]))
        ok = a == () or (len(a) == 1 and (_kind(a[0], "bytes") or _is_int(a[0]))) or (len(a) == 2 and self._encode(a))
        return _Value("value") if ok else self._bad("bytearray")

    def _too_big(self, what: str, size: int) -> str:
        return (
            f"it declares {what} in a {self.file_size}-byte file, over the {self.bound} bytes (2 x file size + "
            f"{SLACK} bytes) a checkpoint may hold ({size / 2**30:.1f} GiB would be allocated)"
        )

    def _getattr(self, a: tuple) -> _Value:  # HistoryBuffer's statistics methods: getattr(HistoryBuffer, 'min')
        if len(a) == 2 and _kind(a[0], "global") and a[0].detail == HISTORY_BUFFER and type(a[1]) is str:
            return _Value("global", HISTORY_BUFFER)
        return self._bad("getattr")

    def _dtype(self, a: tuple) -> _Value:
        if len(a) == 3 and type(a[0]) is str and a[1:] == (False, True):
            if _NUMPY_TYPESTR.fullmatch(a[0]):
                return _Value("dtype", a[0])
            raise CheckpointRefused(f"it builds a numpy dtype {a[0]!r}: only numbers (bool, int, float, complex) load")
        return self._bad("numpy.dtype")

    def _scalar(self, a: tuple) -> _Value:
        if len(a) == 2 and _kind(a[0], "dtype") and _kind(a[1], "bytes") and a[1].detail == _itemsize(a[0].detail):
            return _Value("value")
        return self._bad("numpy scalar")

    def _reconstruct(self, a: tuple) -> _Value:
        if len(a) == 3 and _kind(a[0], "global") and a[0].detail == "numpy.ndarray" and _kind(a[2], "bytes"):
            return _Value("ndarray")
        return self._bad("numpy _reconstruct")

    def _build(self, inst: Any, state: Any) -> None:
        """BUILD sets an object's state: only an OrderedDict's ``_metadata``, a numpy dtype or array as numpy
        pickles them, and a placeholder (which ignores it)."""
        if _kind(inst, "odict") and _kind(state, "dict") and all(k == "_metadata" for k, _ in state.items):
            return
        if _kind(inst, "placeholder"):
            return
        if _kind(inst, "dtype") and type(state) is tuple and len(state) == 8:
            honest = _dtype_state(inst.detail)
            endian_ok = state[1] == honest[1] or (honest[1] != "|" and state[1] in ("<", ">", "="))
            if not inst.built and state[0] == 3 and endian_ok and state[2:] == honest[2:] and all(map(_plain, state)):
                inst.built = True  # a second BUILD is refused
                return
            raise CheckpointRefused(f"it sets the state of a numpy dtype {inst.detail!r} to {state!r}")
        if _kind(inst, "ndarray") and type(state) is tuple and len(state) == 5:
            version, shape, dtype, fortran, raw = state
            ok = not inst.built and version == 1 and _ints(shape) and _kind(dtype, "dtype") and type(fortran) is bool
            if ok:
                count = 1
                for n in shape:
                    count *= n
                if _kind(raw, "bytes") and raw.detail == count * _itemsize(dtype.detail):
                    inst.built = True
                    return
            raise CheckpointRefused("it builds a numpy array whose data is not plain numbers of its dtype")
        raise CheckpointRefused(f"it sets the state (BUILD) of {_describe(inst)}, which only data objects may have")

    def _persistent(self, pid: Any) -> _Value:
        if type(pid) is not tuple or not pid or pid[0] != "storage":
            raise CheckpointRefused("it loads a persistent object that is not a tensor storage")
        legacy = self.storages is None
        view = pid[5] if legacy and len(pid) == 6 else None
        view_ok = view is None or (type(view) is tuple and len(view) == 3 and _is_int(view[1]) and _is_int(view[2]))
        if len(pid) != (6 if legacy else 5) or not view_ok or not _kind(pid[1], "global"):
            raise CheckpointRefused("it loads a tensor storage described in a way torch.save never writes")
        if pid[1].detail not in STORAGE_ITEMSIZE:
            raise CheckpointRefused("it loads a tensor storage described in a way torch.save never writes")
        key, numel = pid[2], pid[4]
        if type(key) is not str or type(pid[3]) is not str or not _is_int(numel) or numel < 0:
            raise CheckpointRefused("it loads a tensor storage described in a way torch.save never writes")
        nbytes = numel * STORAGE_ITEMSIZE[pid[1].detail]
        if legacy:
            self.legacy_bytes[key] = nbytes
            if sum(self.legacy_bytes.values()) > self.bound:
                raise CheckpointRefused(self._too_big(f"tensors of {sum(self.legacy_bytes.values())} bytes", nbytes))
        elif nbytes > self.storages.get(key, -1):
            held = self.storages.get(key)
            raise CheckpointRefused(
                f"it declares a tensor of {nbytes} bytes whose data/{key} member holds "
                + (f"{held} bytes" if held is not None else "nothing (it is missing)")
            )
        return _Value("storage")

    def run(self, ops: Iterator[tuple[Any, Any, Any]]) -> None:
        """Follow the opcodes up to STOP; raises CheckpointRefused (or an error for a damaged pickle)."""
        stack: list[Any] = []
        marks: list[list[Any]] = []
        memo: dict[int, Any] = {}
        for op, arg, _pos in ops:
            name = op.name
            if name not in _TORCH_OPS:
                raise CheckpointRefused(f"it uses the pickle opcode {name}, which torch.save never writes")
            if name == "STOP":
                return
            if name == "GLOBAL":
                module, _, attr = arg.partition(" ")
                full = f"{'builtins' if module == '__builtin__' else module}.{attr}"
                if full not in self.names:
                    raise CheckpointRefused(f"it pickles Python objects besides tensors ({full})")
                stack.append(_Value("global", full))
            elif name == "MARK":
                marks.append(stack)
                stack = []
            elif name in ("TUPLE", "APPENDS", "SETITEMS"):
                items, stack = stack, marks.pop()
                if name == "TUPLE":
                    stack.append(tuple(items))
                elif name == "APPENDS" and type(stack[-1]) is list:
                    stack[-1].extend(items)
                elif name == "SETITEMS" and _kind(stack[-1], "dict", "odict") and len(items) % 2 == 0:
                    stack[-1].items.extend(zip(items[::2], items[1::2], strict=True))
                else:
                    raise CheckpointRefused(f"it uses {name} on something that is not a list or dict")
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                if len(stack) < n:
                    raise IndexError(f"{name} on a short stack")
                stack[-n:] = [tuple(stack[-n:])]
            elif name in ("APPEND", "SETITEM"):
                item = stack.pop() if name == "APPEND" else (stack.pop(-2), stack.pop())
                if name == "APPEND" and type(stack[-1]) is list:
                    stack[-1].append(item)
                elif name == "SETITEM" and _kind(stack[-1], "dict", "odict"):
                    stack[-1].items.append(item)
                else:
                    raise CheckpointRefused(f"it uses {name} on something that is not a list or dict")
            elif name in ("BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "BINPERSID":
                stack.append(self._persistent(stack.pop()))
            elif name in ("REDUCE", "NEWOBJ"):
                args, func = stack.pop(), stack.pop()
                fname = _describe(func)
                if type(args) is not tuple:
                    raise CheckpointRefused(f"it calls {fname} with arguments that are not a tuple")
                if name == "NEWOBJ":
                    if fname != HISTORY_BUFFER or args:
                        raise CheckpointRefused(f"it creates an object of {fname} (NEWOBJ)")
                    stack.append(_Value("placeholder"))
                elif _kind(func, "global") and fname in self.calls:
                    stack.append(self.calls[fname](args))
                else:
                    raise CheckpointRefused(f"it calls {fname}, which is not a function a checkpoint needs")
            elif name == "BUILD":
                state = stack.pop()
                self._build(stack[-1], state)
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name in ("EMPTY_DICT", "EMPTY_SET"):
                stack.append(_Value("dict" if name == "EMPTY_DICT" else "value"))
            elif name in _CONSTANTS:
                stack.append(_CONSTANTS[name])
            elif name != "PROTO":
                stack.append(arg)  # a number or a string
        raise EOFError("the pickle ends without STOP")


def _describe(x: Any) -> str:
    """A global's name, else the kind of a tracked value, else the type of a literal."""
    if isinstance(x, _Value):
        return x.detail if x.kind == "global" else x.kind
    return type(x).__name__


def _plain(x: Any) -> bool:
    return x is None or type(x) in (int, str)


def _itemsize(typestr: str) -> int:
    return int(typestr[1:])


def _dtype_state(typestr: str) -> tuple:
    """The state numpy pickles for a dtype of ``typestr`` (``numpy.dtype(...).__reduce__()[2]``)."""
    return (3, "|" if _itemsize(typestr) == 1 else "<", None, None, None, -1, -1, 0)


class _Bounded:
    """A file read no further than its end: a pickle's declared string length cannot make read() allocate more."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh, self.size = fh, size

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.fh.tell()
        return self.fh.read(left if n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self.fh.readline(max(self.size - self.fh.tell(), 0))


def scan_checkpoint(path: Path) -> None:
    """Check the checkpoint at ``path`` (a torch.save zip, or torch's legacy format) before it is loaded.

    Raises CheckpointRefused when it needs more than a load without trust does, CheckpointUnreadable (or the
    zipfile/pickletools error) when it is damaged.
    """
    size = path.stat().st_size
    bound = size_bound(size)
    if not zipfile.is_zipfile(path):
        with open(path, "rb") as fh:
            bounded = _Bounded(fh, size)
            for _ in range(3):  # magic number, protocol version, system info
                _PickleScan(bound, size, storages={}).run(pickletools.genops(bounded))
            _PickleScan(bound, size, storages=None).run(pickletools.genops(bounded))
            _PickleScan(bound, size, storages={}).run(pickletools.genops(bounded))  # the storage keys
        return
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        declared = sum(i.file_size for i in infos)
        if declared > bound:
            big = max(infos, key=lambda i: i.file_size)
            how = "stored" if big.compress_type == zipfile.ZIP_STORED else "compressed"
            raise CheckpointRefused(
                f"its zip members declare {declared} bytes uncompressed (largest: {big.filename}, {big.file_size} "
                f"bytes, {how}) in a {size}-byte file, over the {bound} bytes (2 x file size + {SLACK} bytes) a "
                "torch.save archive holds"
            )
        names = [i.filename for i in infos]
        pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1 or any(n.endswith("/constants.pkl") for n in names):
            raise CheckpointUnreadable("its zip archive is not one torch.save wrote (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")] + "data/"
        storages = {i.filename[len(prefix) :]: i.file_size for i in infos if i.filename.startswith(prefix)}
        data = archive.read(pickles[0])
    _PickleScan(bound, size, storages).run(pickletools.genops(data))
