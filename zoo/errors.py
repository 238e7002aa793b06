"""The one error hierarchy of onnx-zoo.

Every error the package raises on purpose is a :class:`ZooError`. Each subclass also
inherits the builtin exception that matches its meaning, so callers who already catch
``KeyError`` or ``ValueError`` keep working. Every message says what happened and what
to do next; the command line prints it on one line and exits with :attr:`ZooError.exit_code`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

#: How the interface in use takes a local weights file instead of a download, for the advice of a failed
#: download: the Python API's spelling; the ``zoo`` command sets its command's option, or None where it has none.
weights_hint: ContextVar[str | None] = ContextVar("weights_hint", default="zoo.get(..., weights=FILE)")


def install_hint(distribution: str) -> str:
    """How to install a first-party plugin: its name, and its folder in a clone (it is not on a package index yet)."""
    return f"pip install {distribution} (from a clone of the onnx-zoo repository: pip install ./plugins/{distribution})"


class ZooError(Exception):
    """Base class of every error raised by onnx-zoo."""

    #: Exit status of the ``zoo`` command when this error ends it.
    exit_code: int = 1

    def __str__(self) -> str:
        # KeyError quotes its message with repr(); every ZooError prints plainly.
        return str(self.args[0]) if self.args else self.__class__.__name__


class UnknownModelError(ZooError, KeyError):
    """No installed plugin provides the model name that was asked for."""

    def __init__(self, name: str, suggestions: Sequence[str] = ()) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        message = f"unknown model {name!r}"
        if self.suggestions:
            message += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        else:
            message += "."
        message += " Run 'zoo list' to see every installed model."
        super().__init__(message)


class AmbiguousModelError(ZooError, KeyError):
    """Two plugins, neither of them first-party, register the same model name: the bare name chooses neither."""

    def __init__(self, name: str, qualified: Sequence[str]) -> None:
        self.name = name
        self.qualified = tuple(qualified)
        super().__init__(f"model name {name!r} is registered by {len(self.qualified)} plugins; choose one by its "
                         f"qualified name: {', '.join(self.qualified)} ('zoo plugins' shows the conflict)")


class PluginNotInstalledError(UnknownModelError):
    """The catalogue knows the model, but the plugin that provides it is not installed or not loaded."""

    def __init__(self, name: str, distribution: str, *, installed: bool = False) -> None:
        self.distribution = distribution
        self.installed = installed
        if installed:
            message = (
                f"model {name!r} is provided by the plugin {distribution!r}, which is installed but was not "
                f"loaded: check ZOO_LOAD_PLUGINS and ZOO_DISABLE_PLUGIN_AUTOLOAD, and 'zoo plugins' for errors"
            )
        else:
            message = (
                f"model {name!r} is provided by the plugin {distribution!r}, which is not installed. "
                f"Install it with: {install_hint(distribution)}"
            )
        ZooError.__init__(self, message)
        self.name = name
        self.suggestions = ()


class SpecError(ZooError, ValueError):
    """A model spec, or a part of it, is invalid. The message names the field."""

    def __init__(self, field: str, problem: str, *, model: str | None = None, plugin: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.model = model
        self.plugin = plugin
        super().__init__(self._message())

    def _message(self) -> str:
        where = []
        if self.plugin:
            where.append(f"plugin {self.plugin!r}")
        if self.model:
            where.append(f"model {self.model!r}")
        prefix = f"invalid spec ({', '.join(where)}): " if where else "invalid spec: "
        return f"{prefix}field {self.field!r} {self.problem}"

    def located(self, *, model: str | None = None, plugin: str | None = None) -> SpecError:
        """Return a copy of this error that also names the model and the plugin."""
        return SpecError(self.field, self.problem, model=self.model or model, plugin=self.plugin or plugin)


class DuplicateModelError(ZooError, ValueError):
    """Two plugins (or one plugin twice) registered the same model name or alias (or task name)."""

    def __init__(self, name: str, first: str, second: str, *, what: str = "model name") -> None:
        self.name = name
        self.plugins = (first, second)
        if first == second:
            message = f"plugin {first!r} registers the {what} {name!r} twice"
        else:
            message = (
                f"{what} {name!r} is registered by both plugin {first!r} and plugin "
                f"{second!r}; uninstall one of them, or choose with ZOO_LOAD_PLUGINS"
            )
        super().__init__(message)


class PluginError(ZooError):
    """A plugin could not be imported or could not register its models."""

    def __init__(self, plugin: str, stage: str, cause: BaseException) -> None:
        self.plugin = plugin
        self.stage = stage
        self.cause = cause
        detail = str(cause) or cause.__class__.__name__
        if not isinstance(cause, ZooError):
            detail = f"{cause.__class__.__name__}: {detail}"
        super().__init__(f"plugin {plugin!r} failed to {stage}: {detail}")


class DownloadError(ZooError, OSError):
    """A file could not be fetched: the server failed, timed out or sent something else."""


class ChecksumError(DownloadError):
    """A file's sha256 (or size) is not the one its spec declares."""


class OfflineError(ZooError, ConnectionError):
    """``ZOO_OFFLINE`` forbids the network and the file is not in the cache."""


class CacheLockTimeout(ZooError, TimeoutError):
    """Another process held a cache lock for longer than ``ZOO_LOCK_TIMEOUT``."""


class NotWritableError(ZooError, OSError):
    """A folder the zoo must write to (the cache, an output folder) is read-only, a file, or not allowed."""


class ExportError(ZooError, RuntimeError):
    """The export failed, or the ONNX model does not reproduce PyTorch within tolerance."""


class QuantizationError(ExportError):
    """An int8 model disagrees with its float32 source beyond the spec's limits, or cannot be made.

    A refusal carries the measured figures as ``report`` (:func:`zoo.quantize.measure`'s); None otherwise.
    """

    report: dict | None = None


class PrecisionError(ZooError, ValueError):
    """A runtime or precision (OpenVINO, OpenCV DNN, bf16, fp16, int8 but a classifier's on onnxruntime) whose
    results disagree with onnxruntime float32's beyond the task's limits (:mod:`zoo.gate`). Its figures are in
    ``report``."""

    report: dict | None = None


class WeightsError(ZooError, ValueError):
    """Weights are missing, unsafe to load (a pickle that is not plain tensors) or not a checkpoint."""


class CacheError(ZooError, ValueError):
    """A cache path or a model file is unsafe (a name that escapes the cache, external data outside its folder)."""


class UsageError(ZooError, ValueError):
    """An argument or a ``ZOO_*`` setting has a value the zoo cannot use (``batch_size=0``, an unknown runtime)."""

    exit_code = 2


class ZooInputError(ZooError, ValueError):
    """An image (or other input) cannot be used: missing, not an image, damaged, or of the wrong shape."""


def last_line(error: BaseException) -> str:
    """The last line of an error's message (onnxruntime's carry C++ stack lines), or its type's name."""
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__
