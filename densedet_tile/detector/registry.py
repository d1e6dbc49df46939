"""Build a detector from a name: the CLI's ``--detector`` and the Python ``load_detector``."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import DensedetError, DetectorError, InvalidInputError, one_line
from ..types import PRECISIONS, check_device, check_input_size, check_score_thr
from .base import Detector

__all__ = ["load_detector", "DetectorSpec", "BUILTIN_KINDS", "PRECISIONS"]

log = logging.getLogger(__name__)

#: Names understood by ``--detector`` besides ``MODULE:FACTORY``.
BUILTIN_KINDS: tuple[str, ...] = ("default", "mmdet", "torchvision", "onnx", "yolo")


@dataclass(frozen=True)
class DetectorSpec:
    """A picklable recipe for a detector: what ``--detector/--config/--checkpoint/...`` say.

    Every verb builds its detector from one of these, and ``densedet-tile batch`` ships it as
    it is to each worker, which calls :meth:`build` once. ``kind`` is a name understood by
    :func:`load_detector`; ``options`` are extra keywords for the adapter's build.
    """

    kind: str = "default"
    config: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    input_size: int | None = None
    score_thr: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidInputError(f"detector must be a non-empty string, got {self.kind!r}")
        object.__setattr__(self, "device", check_device(self.device))
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        # refused here, where the spec is made, not by build() on every batch worker
        # (stored as plain numbers: a numpy float was recorded as the text "np.float32(0.5)" in a
        # batch's request key, which then matched no run given 0.5; a diff review)
        object.__setattr__(self, "input_size", check_input_size(self.input_size))
        object.__setattr__(self, "score_thr", check_score_thr(self.score_thr))
        for what in ("config", "checkpoint"):
            v = getattr(self, what)
            if isinstance(v, os.PathLike):
                object.__setattr__(self, what, os.fspath(v))
            elif v is not None and not isinstance(v, str):
                raise InvalidInputError(f"{what} must be a name or a path, got {v!r}")
        object.__setattr__(self, "options", _checked_options(self.options))

    def build(self) -> Detector:
        """Build the detector in the calling process."""
        return load_detector(
            self.kind, config=self.config, checkpoint=self.checkpoint, device=self.device,
            input_size=self.input_size, score_thr=self.score_thr, precision=self.precision,
            options=self.options,
        )

    def resolved(self) -> "DetectorSpec":
        """The same spec with every existing local file path made absolute.

        Workers whose working folder differs then still find them (on a cluster the files must
        lie on storage every node sees). ``config`` is a path only where the detector reads it
        as one: mmdet's when it names a file (a file wins over a shipped name such as
        ``densedet-x101``, as the adapter decides), a factory's when it exists (its meaning is
        the factory's); torchvision's is a builder name and the other adapters take none, so a
        file or folder of that name in the working folder is no reason to change it.
        """

        def absolute(p: str | None) -> str | None:
            return str(Path(p).resolve()) if p and Path(p).exists() else p

        kind = self.kind
        module, sep, factory = kind.rpartition(":")
        if sep and module.endswith(".py") and Path(module).is_file():
            kind = f"{Path(module).resolve()}:{factory}"
        config = self.config
        if self.kind == "mmdet":
            if config and Path(config).expanduser().is_file():
                config = str(Path(config).expanduser().resolve())
        elif self.kind not in BUILTIN_KINDS:  # MODULE:FACTORY
            config = absolute(config)
        return replace(self, kind=kind, config=config, checkpoint=absolute(self.checkpoint))


#: ``options`` the default detector takes: ``runtime`` (auto, onnxruntime, torch), ``threads``,
#: ``split_stacks`` (true/false: cut boxes around piles of packs into layers).
_DEFAULT_OPTIONS: tuple[str, ...] = ("runtime", "threads", "split_stacks")

#: The name a detector factory given by file (``path/to/file.py:FACTORY``) is imported under; no
#: other process has such a module, so objects from it are pickled by value (Ray's workers).
USER_MODULE_PREFIX = "_densedet_user_"

_ADAPTERS = {
    "mmdet": "densedet_tile.detector.mmdet_adapter",
    "torchvision": "densedet_tile.detector.torchvision_adapter",
    "onnx": "densedet_tile.detector.onnx_adapter",
    "yolo": "densedet_tile.detector.yolo_adapter",
}


def _checked_options(options: Any) -> dict[str, Any]:
    """Detector ``options`` as a new dict of keyword arguments (None: none); anything else is
    refused in one line."""
    opts = {} if options is None else options
    if not isinstance(opts, dict) or not all(isinstance(k, str) for k in opts):
        raise InvalidInputError(f"detector options must be a dict of keyword arguments, got {opts!r}")
    return dict(opts)


def load_detector(
    name: str = "default",
    *,
    config: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
    input_size: int | None = None,
    score_thr: float | None = None,
    precision: str = "fp32",
    options: dict[str, Any] | None = None,
) -> Detector:
    """Build the detector called ``name``.

    ``name`` is one of ``default`` (the built-in model shipped in the package; ``checkpoint`` may
    name other weights of its architecture, a ``.pt`` or an ``.onnx`` file), ``mmdet``,
    ``torchvision``, ``onnx``, ``yolo`` (adapters that take ``config`` / ``checkpoint``), or
    ``MODULE:FACTORY`` / ``path/to/file.py:FACTORY``: a user's callable returning an object with
    ``predict(tiles) -> list[Detections]``. The factory receives whichever of ``config``,
    ``checkpoint``, ``device``, ``input_size``, ``score_thr``, ``precision`` and the ``options``
    keys its signature names.

    ``precision`` is ``fp32``, ``fp16`` or ``bf16`` (reduced precision applies on CUDA, where
    the model supports it); ``options`` are extra keyword arguments for the adapter's ``build``
    (e.g. ``cfg_options`` for mmdet, ``num_classes`` for torchvision, ``threads`` for onnx,
    ``iou`` for yolo, ``runtime``, ``threads`` and ``split_stacks`` for default).
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"detector must be a non-empty string, got {name!r}")
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    device = check_device(device)
    # the same rules for every kind of detector, a user's factory's included (its bad values
    # reached it as they were, or were set on what it built and failed at the first image)
    input_size, score_thr = check_input_size(input_size), check_score_thr(score_thr)
    extra = _checked_options(options)
    # (paths as str from here on, as DetectorSpec keeps them: a pathlib.Path is as good)
    config = os.fspath(config) if isinstance(config, os.PathLike) else config
    checkpoint = os.fspath(checkpoint) if isinstance(checkpoint, os.PathLike) else checkpoint
    if name == "default":
        if config is not None:
            raise InvalidInputError("the default detector takes no config (--config): its architecture ships with the package")
        unknown = sorted(set(extra) - set(_DEFAULT_OPTIONS))
        if precision == "bf16" or unknown:
            raise InvalidInputError(
                "the default detector takes only precision fp32/fp16 (--precision) and the detector options "
                f"{', '.join(_DEFAULT_OPTIONS)}" + (f" (got {', '.join(unknown)})" if unknown else "")
            )
        from .builtin import load_default

        # --checkpoint: other weights of the same architecture (.pt runs on torch, .onnx on ONNX Runtime)
        check_input_size(input_size)
        det: Any = load_default(device=device, score_thr=score_thr, fp16=precision == "fp16",
                                weights=checkpoint, **extra)
        if input_size is not None:  # the model is fully convolutional: tiles are shown at this size
            det.input_size = int(input_size)
    elif name in _ADAPTERS:
        module = importlib.import_module(_ADAPTERS[name])
        kwargs: dict[str, Any] = dict(config=config, checkpoint=checkpoint, device=device, input_size=input_size)
        if score_thr is not None:
            kwargs["score_thr"] = score_thr
        if precision != "fp32":
            if "precision" not in inspect.signature(module.build).parameters:
                how = ("runs the model file at the precision it was exported in" if name in ("onnx", "yolo")
                       else "runs in fp32 only")
                raise InvalidInputError(f"the {name} detector {how}; precision {precision} (--precision) is not an option for it")
            kwargs["precision"] = precision
        clash = sorted(set(extra) & set(kwargs))
        if clash:
            raise InvalidInputError(f"detector option(s) {', '.join(clash)} have their own command-line flags")
        det = module.build(**kwargs, **extra)
    elif ":" in name:
        device = _check_factory_device(device)
        own = dict(config=config, checkpoint=checkpoint, device=device, input_size=input_size, score_thr=score_thr,
                   precision=None if precision == "fp32" else precision)
        clash = sorted(set(extra) & set(own))
        if clash:  # (a factory's call got two values for one keyword: a TypeError of our own making)
            raise InvalidInputError(f"detector option(s) {', '.join(clash)} have their own command-line flags "
                                    "(and load_detector arguments)")
        det = _from_factory(name, extra, **own)
    else:
        raise InvalidInputError(
            f"unknown detector {name!r}: expected one of {', '.join(BUILTIN_KINDS)} or MODULE:FACTORY"
        )
    if not callable(getattr(det, "predict", None)):
        raise DetectorError(f"detector {name!r} has no callable predict(tiles) method (got {type(det).__name__})")
    try:  # the precision it was built for (detect_image warns of a run asking another one)
        det._densedet_precision_asked = precision
    except (AttributeError, TypeError):  # (a detector with __slots__, or a frozen one)
        pass
    return det


def _check_factory_device(device: str) -> str:
    """An explicit device for a user's factory, checked as the adapters check theirs.

    A factory's detector often declares no device, so the run would report whatever was asked
    for; asking for CUDA where there is none must fail here instead. With torch installed it
    decides (:func:`~densedet_tile.detector.base.resolve_device`); without it (a factory on
    another runtime) only a machine where no GPU can be visible is refused. ``auto`` is left to
    the factory.
    """
    if device in ("auto", "cpu"):
        return device
    from .base import cuda_plausible, resolve_device

    if sys.modules.get("torch") is None and importlib.util.find_spec("torch") is None:
        if not cuda_plausible():
            raise InvalidInputError(f"device {device!r} was requested but CUDA is not available on this machine")
        return device
    return resolve_device(device)


def _from_factory(spec: str, given: dict[str, Any] | None = None, **options: Any) -> Any:
    """The detector a user's factory ``spec`` (``MODULE:FACTORY`` or ``file.py:FACTORY``)
    returns, called with the ``options`` (load_detector's own arguments; None: not asked for)
    and the detector options ``given`` (``--detector-option``; None there is a value given,
    ``key=none``) that its signature names; the rest are warned about."""
    given = dict(given or {})
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise InvalidInputError(f"detector {spec!r}: expected MODULE:FACTORY")
    try:
        if module_name.endswith(".py") or "/" in module_name or "\\" in module_name:
            path = Path(module_name)
            if not path.is_file():
                raise InvalidInputError(f"detector {spec!r}: no such file {module_name}")
            mod_id = f"{USER_MODULE_PREFIX}{abs(hash(str(path.resolve())))}"
            spec_obj = importlib.util.spec_from_file_location(mod_id, path)
            if spec_obj is None or spec_obj.loader is None:
                raise InvalidInputError(f"detector {spec!r}: cannot import {module_name}")
            module = importlib.util.module_from_spec(spec_obj)
            sys.modules[mod_id] = module
            try:
                spec_obj.loader.exec_module(module)
            except BaseException:
                del sys.modules[mod_id]  # no half-run module left for the next attempt
                raise
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        here = Path(*module_name.split(".")).with_suffix(".py")
        hint = (f" (the file {here} here is not on the import path: give it as {here}:{attr})"
                if here.is_file() and getattr(exc, "name", None) == module_name.split(".")[0] else "")
        raise DetectorError(f"detector {spec!r}: cannot import {module_name}: {exc}{hint}") from exc
    except DensedetError:
        raise
    except Exception as exc:  # the user's module failed while it ran (a SyntaxError, a NameError...)
        raise DetectorError(f"detector {spec!r}: importing {module_name} raised {type(exc).__name__}: "
                            f"{one_line(exc)}") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise DetectorError(f"detector {spec!r}: {module_name} has no callable {attr}")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in options.items() if v is not None and (takes_any or k in params)}
    # a detector option is passed as given, none included (``a=none`` was dropped as if not
    # given, and a misspelt key given none was not warned about: an outside review)
    kwargs.update({k: v for k, v in given.items() if takes_any or k in params})
    # the engine itself resizes tiles to the input_size and drops boxes under the score_thr a
    # detector declares: a factory without those parameters gets them declared on its detector
    declared = {"input_size", "score_thr"}
    unused = sorted([k for k, v in options.items() if v is not None and k not in kwargs and k not in declared | {"device"}]
                    + [k for k in given if k not in kwargs])
    if unused:  # given on the command line but the factory has no such parameter: say so, do not drop silently
        log.warning("detector %s takes no %s; %s ignored", spec, ", ".join(unused),
                    "it is" if len(unused) == 1 else "they are")
    try:
        det = factory(**kwargs)
    except Exception as exc:  # a user's code can raise anything; say where it came from
        raise DetectorError(f"detector {spec!r}: factory raised {type(exc).__name__}: {exc}") from exc
    if not callable(getattr(det, "predict", None)):
        # said before anything is declared on it (a warning that a NoneType cannot hold a
        # score_thr came first: an outside review)
        raise DetectorError(f"detector {spec!r} has no callable predict(tiles) method (got {type(det).__name__})")
    for name in sorted(declared):
        value = options.get(name)
        if value is None or name in kwargs:
            continue
        own = getattr(det, name, None)
        if own is not None:  # the model's own (it may filter there): kept, never overwritten
            if own != value:
                log.warning("detector %s declares its own %s %r, which it keeps; a run's %s (--%s, RunSpec) "
                            "applies to the boxes it returns", spec, name, own, name, name.replace("_", "-"))
            continue
        try:
            setattr(det, name, value)
        except (AttributeError, TypeError):  # slots, a read-only property...
            log.warning("detector %s takes no %s and its %s cannot hold one; pass %s=%r to the run "
                        "(RunSpec, detect()) instead", spec, name, type(det).__name__, name, value)
    return det
