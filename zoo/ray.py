"""Batch inference on Ray Data: a zoo model as one stage of a Ray dataset (the ``ray`` extra).

    import ray
    import zoo.ray

    images = zoo.ray.read("photos/")          # ray.data.read_binary_files, paths included
    results = zoo.ray.predict(images, "resnet50", batch_size=32, concurrency=2)
    results.write_parquet("results/")

Each row of the result holds the image's ``path``, the fields of its result's
``to_dict()`` (a classifier's ``label``, ``class_id``, ``score``, ``topk``; a detector's
``image_size`` and ``detections``, ...) and ``error``: None, or why the image could not
be used (the :class:`~zoo.errors.ZooInputError` message). An image that fails is such a
row; it never stops the run.

Ray schedules; the zoo only gives it :class:`Predictor`, a callable class for
``Dataset.map_batches``. Each Ray worker opens the model once, at its first batch
(onnxruntime sessions cannot be pickled), from the cache of the node it runs on: a node
that lacks the model downloads and exports it there, so warm the nodes with
``zoo pull`` (or ``zoo bundle import``) first.

Read with tasks that ask for no CPU (:func:`read` does; ``read_images(..., num_cpus=0)``):
Ray gives each read task a whole CPU by default, and when the workers hold every CPU of
the cluster the reads wait for one forever, and so does the run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo import onnxfile
from zoo._files import temporary_name
from zoo.errors import ZooError, ZooInputError
from zoo.spec import AUTO

if TYPE_CHECKING:
    import pyarrow
    import ray.data

    from zoo.model import Model

#: :func:`zoo.get`'s arguments that say how a model runs, not what it is.
RUNNING = ("runtime", "providers", "threads", "batch_size")
#: The columns an image is read from, in this order: ``read_images``' decoded arrays (RGB
#: ``uint8``), ``read_binary_files``' encoded bytes, or paths readable on every node.
IMAGE_COLUMNS = ("image", "bytes", "path")


class Predictor:
    """``Dataset.map_batches``' function: the batch's images in, one row per image out.

    ``name``, ``precision`` and the other keywords are :func:`zoo.get`'s; ``options`` are
    ``predict``'s (``topk``, ``score_threshold``, ...). onnxruntime gets as many threads as
    Ray gave the worker CPUs (Ray sets ``OMP_NUM_THREADS=1``, and onnxruntime's default of
    one thread per core would oversubscribe a node that runs several workers), unless
    ``threads`` says otherwise.
    """

    def __init__(self, name: str | os.PathLike[str], *, options: Mapping[str, Any] | None = None, threads: int | None = None,
                 **get: Any) -> None:
        self.name = name
        self.options = dict(options or {})
        self.threads = threads
        self.get = get
        self._model: Model | None = None

    @property
    def model(self) -> Model:
        """The model, opened at the first use in this process."""
        if self._model is None:
            import zoo

            self._model = zoo.get(self.name, threads=self.threads or assigned_cpus(), **self.get)
        return self._model

    def __call__(self, batch: Mapping[str, Any]) -> pyarrow.Table:
        import pyarrow

        column = next((c for c in IMAGE_COLUMNS if c in batch), None)
        if column is None:
            raise ZooInputError(f"a batch for {self.name!r} has the columns {sorted(batch)}, and none of "
                                f"{', '.join(IMAGE_COLUMNS)}: read the images with ray.data.read_images, "
                                f"read_binary_files or a dataset with a 'path' column")
        sources = batch[column]
        paths = batch["path"] if "path" in batch else [None] * len(sources)
        rows = self.rows(sources, [None if p is None else str(p) for p in paths])
        table = pyarrow.Table.from_pylist(rows) if rows else pyarrow.table({"path": [], "error": []})
        for name in ("path", "error"):  # strings even when all null, so that batches agree on their types
            table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(pyarrow.string()))
        return table

    def rows(self, sources: Sequence[Any], paths: Sequence[str | None]) -> list[dict[str, Any]]:
        """One row per source: ``path``, the result's fields and ``error``, every row with every column."""
        from zoo import images

        rows: list[dict[str, Any]] = [{"path": path} for path in paths]
        loaded: dict[int, Any] = {}
        for i, (source, path) in enumerate(zip(sources, paths)):
            try:  # encoded bytes are named by their path in errors
                named = isinstance(source, bytes) and path is not None
                loaded[i] = images.decode(source, path) if named else images.load(source)
            except ZooInputError as error:
                rows[i]["error"] = str(error)
        for i, fields in zip(loaded, self._predict(list(loaded.values()))):
            rows[i].update(fields)
        columns = dict.fromkeys(key for row in rows for key in row if key != "error")
        return [{**dict.fromkeys(columns), **row, "error": row.get("error")} for row in rows]

    def _predict(self, pixels: list[Any]) -> list[dict[str, Any]]:
        """Each image's result fields, or its ``error`` (:func:`zoo.model.predict_each`)."""
        from zoo.results import jsonable

        def fields(result: Any) -> dict[str, Any]:
            data = jsonable(result)
            return data if isinstance(data, dict) else {"result": data}

        from zoo.model import predict_each

        return [{"error": str(answer)} if isinstance(answer, ZooInputError) else fields(answer)
                for answer in predict_each(self.model, pixels, **self.options)]


def read(paths: str | Sequence[str], **options: Any) -> ray.data.Dataset:
    """The files at ``paths`` (files, folders, ``s3://...``) as rows of ``bytes`` and ``path``, read by tasks of no CPU.

    ``options`` go to ``ray.data.read_binary_files`` (``file_extensions``, ``filesystem``, ...).
    """
    import ray.data

    return ray.data.read_binary_files(paths if isinstance(paths, str) else list(paths), include_paths=True,
                                      **{"num_cpus": 0, **options})


def assigned_cpus() -> int | None:
    """The CPUs Ray gave this worker (at least 1), or None outside a Ray worker."""
    import ray

    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    if context.worker.mode != ray.WORKER_MODE:  # the driver: Ray assigned it nothing (and says so by raising)
        return None
    cpus = context.get_assigned_resources().get("CPU")
    return max(1, int(cpus)) if cpus else None


def predict(dataset: ray.data.Dataset, name: str | os.PathLike[str], *, batch_size: int = 32,
            concurrency: int | tuple[int, int] = 1, num_cpus: float = 1, options: Mapping[str, Any] | None = None,
            **get: Any) -> ray.data.Dataset:
    """``dataset``'s images predicted by ``name``: a dataset of rows ``path``, the result's fields, ``error``.

    ``concurrency`` workers (or ``(min, max)`` for an autoscaling pool) each take
    ``num_cpus`` CPUs and run onnxruntime on that many threads, ``batch_size`` images at a
    time. The name and the options are checked here, before Ray starts any work; the
    other keywords go to :func:`zoo.get` on each worker (``precision="int8"``,
    ``weights=...``); ``runtime="auto"`` is tuned here, once, on ``num_cpus`` threads, and the
    workers open its choice. Nothing runs until the dataset is consumed (``write_parquet``,
    ``iter_batches``, ...).
    """
    import ray.data

    low, high = _checked(name, batch_size=batch_size, concurrency=concurrency, options=options, **get)
    if onnxfile.is_file(name):  # the workers open it by its whole path, wherever they run
        name = os.fspath(Path(os.fspath(name).strip()).expanduser().resolve())
    if get.get("runtime") == AUTO:  # tuned once, here, on the threads a worker gets: the workers open the choice
        get = {**get, **_tuned_choice(name, max(1, int(num_cpus)), get)}
    return dataset.map_batches(Predictor, fn_constructor_args=(name,), fn_constructor_kwargs={"options": options, **get},
                               batch_size=batch_size, batch_format="numpy", num_cpus=num_cpus,
                               compute=ray.data.ActorPoolStrategy(min_size=low, max_size=high))


def _tuned_choice(name: str | os.PathLike[str], threads: int, get: Mapping[str, Any]) -> dict[str, str]:
    """``runtime="auto"``'s choice for ``name`` with :func:`zoo.get`'s arguments ``get`` (:func:`zoo.model.tuned`)."""
    import dataclasses

    from zoo.convert import BuildOptions
    from zoo.model import describe, tuned

    fields = {f.name for f in dataclasses.fields(BuildOptions)}
    build = BuildOptions(**{k: v for k, v in get.items() if k in fields})
    opening = {key: value for key, value in get.items() if key in ("providers", "task", "preprocess")}
    if describe(name, build, **{k: v for k, v in opening.items() if k != "providers"})[0].is_pipeline:
        return {}  # each worker tunes the pipeline's models as it opens them
    choice = tuned(name, build, threads=get.get("threads") or threads, **opening)["choice"]
    return {**choice, **({"providers": None} if choice["runtime"] != "onnxruntime" else {})}


def _checked(name: str | os.PathLike[str], *, batch_size: int = 32, concurrency: int | tuple[int, int] = 1,
             options: Mapping[str, Any] | None = None, num_cpus: float = 1, **get: Any) -> tuple[int, int]:
    """The pool's (min, max) size, once the model (the name, the file or the entry, with :func:`zoo.get`'s arguments
    ``get``), the options and the counts are checked (:class:`ZooError`); nothing is built."""
    from zoo._fields import check_count
    from zoo.model import describe
    from zoo.registry import default_registry
    from zoo.tasks import accepted_options, merge_options

    check_count("batch_size", batch_size)
    spec = describe(name, **{key: value for key, value in get.items() if key not in RUNNING})[0]
    merge_options(spec, accepted_options(spec, default_registry().task(spec.task)), options or {})
    low, high = concurrency if isinstance(concurrency, tuple) else (concurrency, concurrency)
    check_count("concurrency", low)
    return low, high


def predict_files(paths: Sequence[str], name: str | os.PathLike[str], output: str | Path, *, address: str | None = None,
                  progress: Callable[[int], None] | None = None, **keywords: Any) -> tuple[int, int]:
    """Predict image files on Ray into one Parquet file at ``output``; returns the rows and the failed images.

    ``address`` is ``ray.init``'s: None starts a local Ray (or joins ``RAY_ADDRESS``),
    ``"auto"``, ``"host:6379"`` or ``"ray://host:10001"`` a cluster's; the files must be
    readable from every node (a shared file system, or ``s3://...`` URIs). The other
    keywords are :func:`predict`'s. ``progress`` is called with each batch's row count as
    it arrives; Ray Data's own progress bars, the plan it prints at the start of a run and the
    statistics it logs at the end are off until the file is written (its other log lines, such
    as "execution finished", follow the ``ray.data`` logger's level, which the caller sets).
    The file is written under a temporary name and renamed when complete.
    """
    import ray

    _checked(name, **keywords)
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level="WARNING",
                 log_to_driver=False, configure_logging=False)
    counts = [0, 0]

    def tables(results: ray.data.Dataset) -> Iterator[pyarrow.Table]:
        for table in results.iter_batches(batch_format="pyarrow", batch_size=None):
            counts[0] += len(table)
            counts[1] += len(table) - table.column("error").null_count
            if progress is not None:
                progress(len(table))
            yield table

    with _ray_data_silent():  # the caller shows its own progress
        write_parquet(tables(predict(read(paths), name, **keywords)), Path(output))
    return counts[0], counts[1]


@contextlib.contextmanager
def _ray_data_silent() -> Iterator[None]:
    """Ray Data's progress bars, its plan printed at a run's start and its statistics logged at the end off,
    then back as they were."""
    import ray.data

    context = ray.data.DataContext.get_current()
    before = {key: getattr(context, key)
              for key in ("enable_progress_bars", "print_on_execution_start", "enable_auto_log_stats")}
    for key in before:
        setattr(context, key, False)
    try:
        yield
    finally:
        for key, value in before.items():
            setattr(context, key, value)


def write_parquet(tables: Iterable[pyarrow.Table], path: Path) -> None:
    """``tables`` as one Parquet file at ``path``, written to a temporary file and renamed at the end.

    A table of images that all failed has no result columns, and one whose detections are
    all empty lists has columns of Arrow's null type: such tables wait until one gives every
    column its type (or the end), and then join the file cast to it. A later table with a
    column the file lacks raises :class:`~zoo.errors.ZooError`: its results are not the same kind.
    """
    import pyarrow.parquet

    temporary = temporary_name(path)
    waiting: list[pyarrow.Table] = []
    writer: pyarrow.parquet.ParquetWriter | None = None

    def flush() -> pyarrow.parquet.ParquetWriter:
        opened = pyarrow.parquet.ParquetWriter(temporary, _unified(waiting))
        for held in waiting:
            opened.write_table(_conform(held, opened.schema))
        waiting.clear()
        return opened

    try:
        for table in tables:
            if writer is not None:
                writer.write_table(_conform(table, writer.schema))
                continue
            waiting.append(table)
            if not _untyped(table.schema) and not set(table.column_names) <= {"path", "error"}:
                writer = flush()
        writer = writer or flush()
        writer.close()
        os.replace(temporary, path)
    except BaseException:
        if writer is not None:
            writer.close()
        temporary.unlink(missing_ok=True)
        raise


def _untyped(schema: pyarrow.Schema) -> bool:
    """Whether a column, or a field inside one, has Arrow's null type (only nulls seen so far)."""
    import pyarrow

    def null(kind: pyarrow.DataType) -> bool:
        if pyarrow.types.is_null(kind):
            return True
        if pyarrow.types.is_struct(kind):
            return any(null(kind.field(i).type) for i in range(kind.num_fields))
        return pyarrow.types.is_list(kind) and null(kind.value_type)

    return any(null(field.type) for field in schema)


def _unified(tables: list[pyarrow.Table]) -> pyarrow.Schema:
    """One schema for ``tables``: ``path`` first, ``error`` last, null types given way to real ones."""
    import pyarrow

    if not tables:
        return pyarrow.schema([("path", pyarrow.string()), ("error", pyarrow.string())])
    schema = pyarrow.unify_schemas([t.schema for t in tables], promote_options="permissive")
    names = ["path", *(n for n in schema.names if n not in ("path", "error")), "error"]
    return pyarrow.schema([schema.field(n) for n in names])


def _conform(table: pyarrow.Table, schema: pyarrow.Schema) -> pyarrow.Table:
    """``table`` with ``schema``'s columns in its order and types; a column it lacks is all null."""
    import pyarrow

    extra = sorted(set(table.column_names) - set(schema.names))
    if extra:
        raise ZooError(f"results with the fields {extra} do not fit the file's columns {schema.names}")
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pyarrow.nulls(len(table), f.type)
               for f in schema]
    return pyarrow.Table.from_arrays(columns, schema=schema)
