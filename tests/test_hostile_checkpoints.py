"""Hostile checkpoints, loaded without trust_checkpoint: refused in one line naming model.trust_checkpoint=true,
before anything is built: no code runs, the process neither crashes nor changes, no memory beyond the file's."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from featvis_run.errors import ModelError
from featvis_run.models import training_checkpoint
from featvis_run.models.checkpoint import load_checkpoint_state

from .checkpoint_payloads import (
    BUILD,
    EMPTY_DICT,
    FALSE,
    HUGE_BYTEARRAY,
    MARK,
    NEWOBJ,
    POISON,
    PROTO,
    SEGFAULT,
    SETITEM,
    STOP,
    TUPLE,
    call,
    checkpoint_pickle,
    dtype,
    glob,
    integer,
    legacy_file,
    raw,
    tensor,
    text,
    torch_zip,
    tup,
)

REPO = Path(__file__).resolve().parents[1]
TRUST = "If you trust where the file came from, rerun with model.trust_checkpoint=true"
ORIGINAL_DEFAULTS = torch._utils._rebuild_tensor_v2.__defaults__


def _refusal(path: Path) -> str:
    with pytest.raises(ModelError) as info:
        load_checkpoint_state(path, trust=False)
    message = str(info.value)
    assert "\n" not in message and TRUST in message, message
    return message


def _code_payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """Payloads that would create ``marker`` if their code ran, and what the refusal names."""
    code = f"open({str(marker)!r}, 'w').close()"
    return {
        "exec": (call(glob("builtins", "exec"), text(code)), "(builtins.exec)"),
        "eval": (call(glob("__builtin__", "eval"), text(code)), "(builtins.eval)"),
        "os.system": (call(glob("os", "system"), text(f"touch {marker}")), "(os.system)"),
        "posix.system": (call(glob("posix", "system"), text(f"touch {marker}")), "(posix.system)"),
        "__import__": (
            call(
                call(glob("builtins", "getattr"), call(glob("builtins", "__import__"), text("os")), text("system")),
                text(f"touch {marker}"),
            ),
            "(builtins.__import__)",
        ),
        "getattr of an allowed function": (
            call(glob("builtins", "getattr"), glob("torch._utils", "_rebuild_tensor_v2"), text("__globals__")),
            "calls getattr with arguments torch.save never writes",
        ),
        "STACK_GLOBAL (protocol 4)": (
            text("builtins") + text("exec") + b"\x93" + MARK + text(code) + TUPLE + b"R",
            "pickle opcode STACK_GLOBAL",
        ),
    }


@pytest.mark.parametrize("fallback", [False, True], ids=["safe_globals", "restricted-unpickler"])
@pytest.mark.parametrize("name", list(_code_payloads(Path("m"))))
def test_code_in_a_checkpoint_never_runs(name, fallback, tmp_path, monkeypatch):
    if fallback:  # torch < 2.5 has no safe_globals: the restricted unpickler loads instead
        monkeypatch.setattr(training_checkpoint, "_has_safe_globals", lambda: False)
    marker = tmp_path / "ran"
    payload, names = _code_payloads(marker)[name]
    path = torch_zip(tmp_path / "evil.pth", checkpoint_pickle(payload))
    assert names in _refusal(path)
    assert not marker.exists()


def test_a_numpy_object_scalar_crashes_an_unguarded_load_but_is_refused_in_one_line(tmp_path):
    pkl = tmp_path / "segfault.pkl"
    pkl.write_bytes(checkpoint_pickle(SEGFAULT))
    crashed = subprocess.run([sys.executable, "-c", f"import pickle; pickle.loads(open({str(pkl)!r}, 'rb').read())"])
    assert crashed.returncode < 0  # the payload is real: SIGSEGV (-11) with a plain unpickler
    path = torch_zip(tmp_path / "segfault.pth", pkl.read_bytes())
    script = (
        "import sys; from pathlib import Path; from featvis_run.errors import FeatvisError\n"
        "from featvis_run.models.checkpoint import load_checkpoint_state\n"
        "try:\n    load_checkpoint_state(Path(sys.argv[1]), trust=False)\n"
        "except FeatvisError as err:\n    print(f'featvis-run: error: {err}', file=sys.stderr); sys.exit(2)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and TRUST in lines[0], proc.stderr
    assert "it builds a numpy dtype 'O8': only numbers" in lines[0]


@pytest.mark.parametrize("fallback", [False, True], ids=["safe_globals", "restricted-unpickler"])
def test_the_loader_alone_refuses_an_object_scalar_without_crashing(fallback, tmp_path):
    """Behind the scan, the loader's own scalar rebuilder checks the dtype (run in a child: a miss is a SIGSEGV)."""
    path = torch_zip(tmp_path / "segfault.pth", checkpoint_pickle(SEGFAULT))
    script = (
        "import pickle, sys; from pathlib import Path; from featvis_run.models import training_checkpoint as t\n"
        f"t._has_safe_globals = lambda: {not fallback}\n"
        "try:\n    t.load_without_trust(Path(sys.argv[1]))\n"
        "except pickle.UnpicklingError as err:\n    print('refused', err); sys.exit(3)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 3 and "refused" in proc.stdout, (proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize("fallback", [False, True], ids=["safe_globals", "restricted-unpickler"])
def test_a_poisoning_checkpoint_leaves_later_loads_exact(fallback, tmp_path, monkeypatch):
    if fallback:
        monkeypatch.setattr(training_checkpoint, "_has_safe_globals", lambda: False)
    pkl = tmp_path / "poison.pkl"
    pkl.write_bytes(checkpoint_pickle(POISON))
    child = (
        "import pickle, torch; pickle.loads(open(%r, 'rb').read()); print(torch._utils._rebuild_tensor_v2.__defaults__)"
    )
    poisoned = subprocess.run([sys.executable, "-c", child % str(pkl)], capture_output=True, text=True)
    assert "'neg': True" in poisoned.stdout  # the payload is real: a plain unpickler sets the defaults
    evil = torch_zip(tmp_path / "poison.pth", pkl.read_bytes())
    assert "sets the state (BUILD) of torch._utils._rebuild_tensor_v2" in _refusal(evil)
    with pytest.raises(pickle.UnpicklingError, match="(?i)build"):  # the loader on its own refuses it too (no scan)
        training_checkpoint.load_without_trust(evil)
    assert torch._utils._rebuild_tensor_v2.__defaults__ == ORIGINAL_DEFAULTS == (None,)
    clean = tmp_path / "clean.pth"
    torch.save({"state_dict": {"w": torch.tensor([1.0, 2.0, 3.0])}}, clean)
    loaded = load_checkpoint_state(clean, trust=False)["state_dict"]["w"]
    assert loaded.tolist() == [1.0, 2.0, 3.0] and not loaded.is_neg()


class _TorchLoadCalled(AssertionError):
    pass


def _no_torch_load(*args, **kwargs):
    raise _TorchLoadCalled("torch.load was called on a file the scan should have refused")


def test_a_huge_bytearray_is_refused_before_allocation(tmp_path, monkeypatch):
    path = torch_zip(tmp_path / "bytearray.pth", checkpoint_pickle(HUGE_BYTEARRAY))
    monkeypatch.setattr(torch, "load", _no_torch_load)
    size = path.stat().st_size
    message = _refusal(path)
    bound = 2 * size + 2**20
    assert f"a bytearray of 3000000000 bytes in a {size}-byte file, over the {bound} bytes" in message


def test_a_deflated_member_of_large_declared_size_is_refused_before_loading(tmp_path, monkeypatch):
    numel = 8 * 2**20  # 32 MiB of float32 zeros, deflated to a few tens of KiB
    pkl = PROTO + EMPTY_DICT + text("w") + tensor("0", numel, (numel,)) + SETITEM + STOP
    path = torch_zip(tmp_path / "bomb.pth", pkl, {"0": bytes(4 * numel)}, deflate=True)
    size = path.stat().st_size
    assert size < 2**20
    monkeypatch.setattr(torch, "load", _no_torch_load)
    message = _refusal(path)
    assert f"largest: archive/data/0, {4 * numel} bytes, compressed) in a {size}-byte file" in message


def test_a_storage_larger_than_its_data_member_is_refused(tmp_path, monkeypatch):
    pkl = PROTO + EMPTY_DICT + text("w") + tensor("0", 10**9, (10**9,)) + SETITEM + STOP
    path = torch_zip(tmp_path / "liar.pth", pkl, {"0": struct.pack("<f", 1.0)})
    monkeypatch.setattr(torch, "load", _no_torch_load)
    assert "declares a tensor of 4000000000 bytes whose data/0 member holds 4 bytes" in _refusal(path)


def test_legacy_format_loads_when_honest_and_is_refused_when_its_storage_is_huge(tmp_path):
    honest = legacy_file(tmp_path / "zoo.pth", 4, struct.pack("<4f", 1, 2, 3, 4))
    assert load_checkpoint_state(honest, trust=False)["w"].tolist() == [1.0, 2.0, 3.0, 4.0]
    huge = legacy_file(tmp_path / "huge.pth", 10**9, struct.pack("<4f", 1, 2, 3, 4))
    assert "tensors of 4000000000 bytes" in _refusal(huge)


_REFUSED = {
    "numpy object dtype": (dtype("O8", flags=63, endian="|"), "numpy dtype 'O8'"),
    "float dtype with other flags": (
        call(glob("numpy._core.multiarray", "scalar"), dtype("f8", flags=16), raw("\0" * 8)),
        "sets the state of a numpy dtype 'f8'",
    ),
    "array data shorter than its shape": (
        call(glob("numpy.core.multiarray", "_reconstruct"), glob("numpy", "ndarray"), tup(integer(0)), raw("b"))
        + tup(integer(1), tup(integer(1000)), dtype("f8", flags=0), FALSE, raw("\0" * 8))
        + BUILD,
        "numpy array whose data is not plain numbers",
    ),
    "NEWOBJ of ndarray": (glob("numpy", "ndarray") + tup(tup(integer(10**9))) + NEWOBJ, "NEWOBJ"),
    "repeated hex codec": (call(glob("_codecs", "encode"), raw("ab"), text("hex")), "_codecs.encode"),
    "HistoryBuffer called": (call(glob("mmengine.logging.history_buffer", "HistoryBuffer")), "HistoryBuffer"),
}


@pytest.mark.parametrize("name", list(_REFUSED))
def test_other_payloads_are_refused_in_one_line(name, tmp_path):
    payload, fragment = _REFUSED[name]
    assert fragment in _refusal(torch_zip(tmp_path / "x.pth", checkpoint_pickle(payload)))


def test_a_zip_that_is_not_a_torch_archive_is_a_corrupted_file_not_a_crash(tmp_path):
    path = tmp_path / "other.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ModelError, match=r"is a truncated or corrupted checkpoint \(.*no single data.pkl"):
        load_checkpoint_state(path, trust=False)
