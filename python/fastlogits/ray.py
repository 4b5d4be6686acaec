"""Generation over a Ray cluster: the dataset jobs of :mod:`fastlogits.batch`, spread over actors that each
load the model once. Needs the ``ray`` extra: ``pip install 'fastlogits[ray]'`` (``ray[data]>=2.9``).

Two entry points:

* :func:`generate_dataset` maps a ``ray.data.Dataset`` of prompts to a ``ray.data.Dataset`` of results,
  lazily (``ds.map_batches`` over a pool of ``concurrency`` actors, ``batch_size`` prompts per forward batch):

  >>> import ray
  >>> from fastlogits.ray import ModelSpec, generate_dataset
  >>> ds = ray.data.from_items([{"id": i, "prompt": p} for i, p in enumerate(prompts)])
  >>> out = generate_dataset(ds, ModelSpec("gpt2"), concurrency=4, batch_size=8, seed=0,
  ...                        max_new_tokens=50, do_sample=True, top_k=25)
  >>> out.write_json("results/")    # or out.iter_rows(), out.take_all(), ...

  **Columns**: the prompt is the column ``field`` (default ``"prompt"``, strings), the id the column
  ``id_field`` (default ``"id"``, strings or integers, one type per column as Arrow wants). The output rows
  are those of the local job: ``id``, ``prompt``, ``generated``, ``num_tokens``, ``finish_reason`` (the last
  three lists with ``num_return_sequences > 1``); other input columns are dropped. Example ``id`` draws from
  the stream ``stream_key(seed, id)``, so its text is the local job's, whatever the batches or the number of
  actors. Without an id column, the ``id`` of a row is ``None`` and its stream is keyed by its prompt
  (``stream_key(seed, prompt)``): equal prompts then get equal continuations, so give ids for distinct draws.

* :class:`RayEngine` is an engine for :func:`fastlogits.batch.run_job` (like ``batch.LocalEngine``): the
  file job (reading, resuming, appending, the sidecar ``.meta.json``) is unchanged, only the generation runs
  on the actors. Its ``run(examples)`` yields one list of rows per finished batch, in input order by default
  (``preserve_order=False``: in the order batches finish, which keeps every actor's results flowing to the
  output at once; resuming works the same, as it goes by id). The rows are byte for byte those of
  ``LocalEngine`` with the same seed and generation arguments, whatever ``batch_size`` and ``concurrency``.

**The cluster**: ``address=None`` uses the Ray already initialised in this process, else starts a local one
(``ray.init()``: every core of this machine; set ``RAY_ADDRESS`` to join a cluster instead);
``address="auto"`` joins the cluster this machine is a node of (started with ``ray start --head`` /
``ray start --address=HEAD:6379``); ``address="ray://HEAD:10001"`` connects a remote driver with Ray
Client. Every node needs the same Python environment: fastlogits with its ``torch`` and ``ray`` extras (give
``runtime_env={"pip": [...]}`` in ``init_kwargs`` to install them per job instead).

**The model** travels as a :class:`ModelSpec` (a name or a path, never the weights): each actor calls
``GPT2.load`` itself. So the checkpoint (a directory, or a name in the Hugging Face cache) and the tokenizer
directory must be readable **on every node**, at the same path: a shared file system (NFS, a mounted bucket),
or the same files copied to each node (``huggingface-cli download gpt2`` on each, for the cache: nothing is
downloaded at load time). ``random_weights=True`` needs no files: every actor builds GPT-2 small's shape from
``seed`` (``torch.manual_seed``), so they all hold the same weights as ``GPT2.load(None,
random_weights=True, seed=seed)`` on the driver. The tokenizer defaults to ``$FASTLOGITS_TOKENIZER`` as the
driver sees it, else the checkpoint's, else the copy bundled with fastlogits (present wherever fastlogits is).

**Threads**: each actor reserves ``num_cpus`` Ray CPUs (default: ``num_threads``) and sets
``torch.set_num_threads(num_threads)`` (default 1), so ``concurrency`` × ``num_threads`` should not exceed
the cores: on a 2-core machine, 2 actors × 1 thread. GPU actors: ``device="cuda"`` in the spec and
``num_gpus=1``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any

from .batch import Example, _id_key, generate_rows
from .errors import InvalidArgumentError
from .gpt2 import ModelSpec

__all__ = ["RAY_EXTRA", "ModelSpec", "RayEngine", "generate_dataset", "require_ray"]

RAY_EXTRA = "pip install 'fastlogits[ray]'"


def require_ray():
    """The ``ray`` module (with Ray Data); if Ray is not installed, a one-line ``ModuleNotFoundError``
    (``name="ray"``) that names the extra to install."""
    try:
        import ray  # the top-level Ray: absolute import, not this module
        import ray.data  # noqa: F401
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in ("ray", "pyarrow", "pandas"):
            raise
        raise ModuleNotFoundError(
            f"fastlogits.ray needs Ray Data, which is not installed: {RAY_EXTRA}", name="ray"
        ) from None
    return ray


# -- the actors ----------------------------------------------------------------------------------------------


class _Actor:
    """Loads the model once (per actor), with ``num_threads`` torch threads."""

    def __init__(self, spec: dict[str, Any], seed: int, gen_kwargs: dict[str, Any], num_threads: int | None):
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # no "Loading weights" bar per actor in the driver's console
        except ImportError:
            pass
        self.lm = ModelSpec(**spec).load()
        self.seed = seed
        self.gen_kwargs = gen_kwargs

    def rows(self, examples: list[Example]) -> list[dict[str, Any]]:
        return generate_rows(self.lm, examples, seed=self.seed, **self.gen_kwargs)


class _EngineActor(_Actor):
    """For :class:`RayEngine`: one dataset row per batch, ``{"ids": [JSON of each id], "texts": [prompt,
    ...]}`` in, ``{"rows": [JSON of each result row]}`` out (JSON keeps any id type and the rows' exact
    values)."""

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out = []
        for ids, texts in zip(batch["ids"].tolist(), batch["texts"].tolist()):
            examples = [Example(json.loads(k), t, 0) for k, t in zip(list(ids), list(texts))]
            out.append([json.dumps(r, ensure_ascii=False) for r in self.rows(examples)])
        rows = np.empty(len(out), dtype=object)
        rows[:] = out
        return {"rows": rows}


class _DatasetActor(_Actor):
    """For :func:`generate_dataset`: the ``field`` / ``id_field`` columns in, result rows out."""

    def __init__(self, *args: Any, field: str, id_field: str):
        super().__init__(*args)
        self.field = field
        self.id_field = id_field

    def __call__(self, batch: dict[str, Any]):
        import pyarrow as pa

        if self.field not in batch:
            raise InvalidArgumentError(
                f"the dataset has no {self.field!r} column (its columns: {', '.join(map(str, batch))}): give "
                "the prompts' column as field="
            )
        texts = batch[self.field].tolist()
        ids = batch[self.id_field].tolist() if self.id_field in batch else None
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                where = f"id {ids[i]!r}" if ids is not None else f"prompt {t!r}"
                raise InvalidArgumentError(f"{where}: {self.field!r} has to be a non-empty string")
        keys = ids if ids is not None else texts
        rows = self.rows([Example(k, t, 0) for k, t in zip(keys, texts)])
        if ids is None:
            for r in rows:
                r["id"] = None
        return pa.Table.from_pylist(rows)


# -- shared set-up -----------------------------------------------------------------------------------------


def _positive(name: str, value: Any, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"`{name}` has to be a positive int, but is {value!r}")


def _map_args(
    concurrency: int | None,
    batch_size: int,
    num_threads: int | None,
    num_cpus: float | None,
    num_gpus: float | None,
) -> dict[str, Any]:
    _positive("batch_size", batch_size)
    _positive("concurrency", concurrency, allow_none=True)
    _positive("num_threads", num_threads, allow_none=True)
    if num_cpus is None:
        num_cpus = float(num_threads or 1)
    args: dict[str, Any] = {"batch_size": batch_size, "num_cpus": num_cpus, "batch_format": "numpy"}
    if num_gpus:
        args["num_gpus"] = num_gpus
    ray = require_ray()
    if concurrency is None:
        if not ray.is_initialized():
            ray.init()  # as Ray Data would on execution: RAY_ADDRESS's cluster, else a local one
        cpus = ray.cluster_resources().get("CPU", 1.0)
        concurrency = max(1, int(cpus // num_cpus)) if num_cpus else 1
        if num_gpus:
            concurrency = min(concurrency, max(1, int(ray.cluster_resources().get("GPU", 0) // num_gpus)))
    args["compute"] = ray.data.ActorPoolStrategy(size=concurrency)
    return args


def _spec_dict(model: ModelSpec | str) -> dict[str, Any]:
    if isinstance(model, str):
        model = ModelSpec(model)
    if not isinstance(model, ModelSpec):
        raise InvalidArgumentError(
            f"`model` has to be a ModelSpec or a model name / path, got {type(model).__name__}: the actors load "
            "the model themselves"
        )
    return asdict(model)


def _quiet(ds: Any, *, preserve_order: bool, progress_bars: bool) -> None:
    """This dataset's execution options (its own context: Ray's global one is left alone)."""
    ctx = ds.context
    ctx.execution_options.preserve_order = preserve_order
    ctx.enable_progress_bars = progress_bars


@contextlib.contextmanager
def _ray_data_logs(shown: bool):
    """Ray Data's INFO lines (execution plans, progress) on the console only with ``shown``."""
    logger = logging.getLogger("ray.data")
    old = logger.level
    if not shown:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(old)


def generate_dataset(
    ds: Any,
    model: ModelSpec | str = "gpt2",
    *,
    field: str = "prompt",
    id_field: str = "id",
    concurrency: int | None = None,
    batch_size: int = 8,
    num_threads: int | None = 1,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    seed: int = 0,
    **gen_kwargs: Any,
) -> Any:
    """The results of the prompts of ``ds`` (a ``ray.data.Dataset``) as a lazy ``ray.data.Dataset`` of the
    rows of :mod:`fastlogits.batch` (see the module doc for the columns): ``concurrency`` actors (default:
    as many as the cluster's CPUs allow at ``num_cpus`` each) each load ``model`` once and generate
    ``batch_size`` prompts at a time with ``gen_kwargs`` (``generate``'s arguments) and per-example seeds."""
    from ._validate import check_seed

    require_ray()
    seed = check_seed(seed)
    spec = _spec_dict(model)
    args = _map_args(concurrency, batch_size, num_threads, num_cpus, num_gpus)
    return ds.map_batches(
        _DatasetActor,
        fn_constructor_args=(spec, seed, dict(gen_kwargs), num_threads),
        fn_constructor_kwargs={"field": field, "id_field": id_field},
        **args,
    )


class RayEngine:
    """An engine for :func:`fastlogits.batch.run_job` that generates on Ray actors (see the module doc):
    ``concurrency`` actors, each loading ``model`` once with ``num_threads`` torch threads, ``batch_size``
    examples per forward batch. ``address``: the cluster (``None``: the Ray of this process, else a new local
    one; ``"auto"``; ``"ray://HEAD:10001"``); ``init_kwargs`` go to ``ray.init``. :meth:`close` (or ``with``)
    shuts down a Ray this engine started."""

    name = "ray"

    def __init__(
        self,
        model: ModelSpec | str,
        *,
        batch_size: int = 8,
        concurrency: int | None = None,
        num_threads: int | None = 1,
        num_cpus: float | None = None,
        num_gpus: float | None = None,
        seed: int = 0,
        address: str | None = None,
        init_kwargs: dict[str, Any] | None = None,
        preserve_order: bool = True,
        progress_bars: bool = False,
        **gen_kwargs: Any,
    ):
        from ._validate import check_seed

        self._ray = require_ray()
        _positive("batch_size", batch_size)
        self.spec = _spec_dict(model)
        self.batch_size = batch_size
        self.seed = check_seed(seed)
        self.gen_kwargs = gen_kwargs
        self.num_threads = num_threads
        self.preserve_order = preserve_order
        self.progress_bars = progress_bars
        self._started = False
        ray = self._ray
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "logging_level": "WARNING", **(init_kwargs or {})}
            ray.init(address=address, **kwargs)
            self._started = True
        elif address is not None:
            raise InvalidArgumentError(
                f"Ray is already initialised in this process: cannot join address={address!r} (give address=None "
                "to use it, or ray.shutdown() first)"
            )
        self._map = _map_args(concurrency, batch_size, num_threads, num_cpus, num_gpus)
        self.concurrency: int = self._map["compute"].min_size  # the number of actors

    def run(self, examples: Sequence[Example]) -> Iterator[list[dict[str, Any]]]:
        """The rows of ``examples``, one list per finished batch (in input order unless
        ``preserve_order=False``)."""
        if not examples:
            return
        ray = self._ray
        b = self.batch_size
        # One dataset row (and block) per batch of LocalEngine's: each actor call generates exactly that batch.
        batches = [
            {
                "ids": [_id_key(ex.id) for ex in examples[s : s + b]],
                "texts": [ex.text for ex in examples[s : s + b]],
            }
            for s in range(0, len(examples), b)
        ]
        ds = ray.data.from_items(batches, override_num_blocks=len(batches))
        out = ds.map_batches(
            _EngineActor,
            fn_constructor_args=(self.spec, self.seed, dict(self.gen_kwargs), self.num_threads),
            **{**self._map, "batch_size": 1},
        )
        _quiet(out, preserve_order=self.preserve_order, progress_bars=self.progress_bars)
        seen = 0
        with _ray_data_logs(self.progress_bars):
            it = iter(out.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0))
            try:
                for block in it:
                    for encoded in block["rows"].tolist():
                        rows = [json.loads(r) for r in encoded]
                        seen += len(rows)
                        yield rows
            except Exception as e:
                raise _user_error(e) from None
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        if seen != len(examples):  # never expected: Ray Data lost or duplicated rows
            raise RuntimeError(f"Ray returned {seen} results for {len(examples)} examples")

    def close(self) -> None:
        """Shuts down the Ray this engine started (a Ray it found running is left alone)."""
        if self._started:
            self._ray.shutdown()
            self._started = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_ERROR_LINE = re.compile(r"^(fastlogits(?:\.\w+)*)\.(\w+): (.+)$", re.MULTILINE)


def _user_error(e: BaseException) -> BaseException:
    """A fastlogits error raised in an actor (a bad model path, bad generation arguments), as such: Ray wraps
    it (``RayTaskError``, ``UserCodeException``) or keeps only its traceback's text (an ``ActorDiedError``
    when ``__init__`` failed). Anything else: ``e`` itself."""
    import importlib

    from ._native import FastLogitsError

    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, FastLogitsError) and not type(cur).__module__.startswith("ray"):
            return cur
        cause = getattr(cur, "cause", None)
        cur = cause if isinstance(cause, BaseException) else (cur.__cause__ or cur.__context__)
    found = _ERROR_LINE.findall(str(e))
    if found:
        module, name, message = found[-1]
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return e
        if isinstance(cls, type) and issubclass(cls, FastLogitsError):
            return cls(message.strip())
    return e
