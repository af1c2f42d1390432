"""Exception classes of pytest-trtctx.

Every error the plugin raises on purpose is a subclass of :class:`TrtctxError`, so that a caller can
tell the plugin's own verdicts from a bug in the code under test.
"""

from __future__ import annotations


class TrtctxError(Exception):
    """Base class of every error raised on purpose by pytest-trtctx."""


class ConfigError(TrtctxError):
    """A setting (option, ini key, marker argument) has a value the plugin cannot use.

    The plugin turns it into :class:`pytest.UsageError` at configure time; the message always
    names the value, where it came from and what is allowed.
    """


class MatrixError(TrtctxError):
    """The engine matrix file is malformed: the message names the file, the entry and the field."""


class KernelCompileError(TrtctxError):
    """NVRTC refused to compile a reference kernel; the message carries NVRTC's log."""


class CudaError(TrtctxError):
    """A CUDA driver call returned an error.

    ``result_name`` is the driver's own name for the result (``CUDA_ERROR_INVALID_HANDLE``), which
    is what failure signatures match on.
    """

    def __init__(self, call: str, result_name: str, detail: str = "") -> None:
        self.call = call
        self.result_name = result_name
        self.detail = detail
        text = f"{call} returned {result_name}"
        if detail:
            text += f": {detail}"
        super().__init__(text)


class NoCudaDriver(TrtctxError):
    """There is no usable CUDA driver on this machine (no libcuda, or no device)."""


class OrderError(TrtctxError):
    """An init order could not be applied (CUDA already initialised, too few devices, ...)."""


class BackendUnavailable(TrtctxError):
    """The selected backend cannot run here; the message says exactly why."""


class CollectionError(TrtctxError):
    """Collecting the tests in a child process failed: the child died, or the plugin's own code
    there raised. The message says how and carries the child's traceback."""


class SpecRefused(BackendUnavailable):
    """The backend cannot run this convolution (its kernel or library does not support it); the
    message names the spec and says why. Tests skip with it, as for an unavailable backend."""
