"""mmcv ops without a kernel for the model's device (CARAFE, ... have CUDA kernels only): found in the library's
message and said in one line that names the op, the device it needs and what can still be recorded."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MissingKernel", "missing_kernel", "missing_kernel_message"]

# mmcv's op registry: "carafe_forward_impl: implementation for device cpu not found."
_NOT_FOUND = re.compile(r"(\w+?)(?:_impl)?: implementation for device (\w+) not found")


@dataclass(frozen=True)
class MissingKernel:
    """An mmcv op (``carafe_forward``) that has no kernel for ``device`` (``cpu``)."""

    op: str
    device: str

    @property
    def needs(self) -> str:
        """The device the op does run on."""
        return "cuda" if self.device == "cpu" else "cpu"


def missing_kernel(err: BaseException) -> MissingKernel | None:
    """The op and device of an mmcv "implementation for device ... not found" error (through its causes), or None."""
    seen: set[int] = set()
    cause: BaseException | None = err
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        found = _NOT_FOUND.search(str(cause))
        if found:
            return MissingKernel(found.group(1), found.group(2).lower())
        cause = cause.__cause__ or cause.__context__
    return None


def missing_kernel_message(kernel: MissingKernel, model: str, recorders: list[str], key: str = "model") -> str:
    """The one line for a recording that stopped at an op without a kernel for the device, before the recorded
    layers ran."""
    if kernel.needs == "cuda":
        fix = f"run it on a GPU ({key}.device=cuda, with an mmcv built with CUDA ops)"
    else:
        fix = f"install an mmcv built with CUDA ops, or run it with {key}.device=cpu"
    return (
        f"{model} uses mmcv's {kernel.op!r} op, which has no {kernel.device} kernel here (it needs {kernel.needs}); "
        f"the recorded layers ({', '.join(recorders)}) run after it, so nothing was recorded: {fix}, or record what "
        "runs before it: "
        "recorder=backbone"
    )
