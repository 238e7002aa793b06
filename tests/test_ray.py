"""zoo.ray and `zoo predict --ray`: a real local Ray (two CPUs) predicting a folder of real and generated photos.

Every row must equal the library's ``predict`` of the same image, and an image that cannot
be decoded must be a row with its error, not the end of the run. zoo-digits is the model:
it needs no torch and no download, so the test measures Ray's part, not an export.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import zoo

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")
import pyarrow
import pyarrow.parquet
from conftest import ROOT, run_zoo

import zoo.ray
from zoo.model import tuned

if "digits" not in zoo.list_models():
    pytest.skip("the zoo-digits plugin is not installed", allow_module_level=True)

#: The files that cannot be decoded, and what their error must say.
BROKEN = {"truncated.jpg": "truncated JPEG", "notes.png": "not an image"}
SAMPLE = ROOT / "plugins" / "zoo-digits" / "samples" / "7.png"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos (scikit-image's and zoo-digits' samples), generated images, and files that are not images."""
    data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("images")
    for name in ("chelsea", "coffee", "astronaut"):
        cv2.imwrite(str(folder / f"{name}.jpg"), getattr(data, name)()[:, :, ::-1])
    cv2.imwrite(str(folder / "camera.png"), data.camera())  # grayscale
    for sample in sorted((ROOT / "plugins" / "zoo-digits" / "samples").glob("*.png"))[:6]:
        (folder / f"digit-{sample.name}").write_bytes(sample.read_bytes())
    generator = np.random.default_rng(0)
    cv2.imwrite(str(folder / "noise.png"), generator.integers(0, 256, (48, 64, 3), np.uint8))
    cv2.imwrite(str(folder / "ring.png"), cv2.circle(np.zeros((40, 40), np.uint8), (20, 20), 12, 255, 4))
    whole = (folder / "chelsea.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(whole[:len(whole) // 3])
    (folder / "notes.png").write_text("these are notes, not an image\n")
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A local Ray with two CPUs whose workers share one empty zoo cache."""
    os.environ["ZOO_CACHE_DIR"] = str(tmp_path_factory.mktemp("ray-cache"))  # the workers inherit it
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def library(source: object) -> dict:
    """What ``zoo.get("digits").predict`` gives for ``source``, as the rows hold it."""
    return zoo.get("digits").predict(source).to_dict()


def check_row(row: dict, want: dict) -> None:
    assert row["error"] is None, row
    assert row["label"] == want["label"] and row["class_id"] == want["class_id"], (row["path"], row, want)
    assert row["score"] == pytest.approx(want["score"], rel=1e-5, abs=1e-7)
    assert [p["label"] for p in row["topk"]] == [p["label"] for p in want["topk"]]


def test_every_row_equals_the_librarys_predict_and_broken_images_are_error_rows(cluster, folder):
    results = zoo.ray.predict(zoo.ray.read(str(folder)), "digits", batch_size=4, concurrency=2, options={"topk": 3})
    rows = results.take_all()
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in folder.iterdir())
    for row in rows:
        name = Path(row["path"]).name
        if name in BROKEN:
            assert BROKEN[name] in row["error"] and name in row["error"], row
            assert row["label"] is None and row["score"] is None
        else:
            check_row(row, zoo.get("digits").predict(folder / name, topk=3).to_dict())
    assert len({r["label"] for r in rows if r["error"] is None}) > 2  # the images are told apart


def test_predict_files_writes_every_image_to_parquet_and_leaves_ray_datas_settings_as_they_were(
        cluster, folder, tmp_path, monkeypatch):
    context = ray.data.DataContext.get_current()
    settings = ("enable_progress_bars", "print_on_execution_start", "enable_auto_log_stats")
    for key in settings:  # a caller's own choice, which predict_files turns off while it runs
        monkeypatch.setattr(context, key, True)
    before = {key: getattr(context, key) for key in settings}
    with pytest.raises(Exception, match="missing"):  # the files are listed before anything runs
        zoo.ray.predict_files([str(tmp_path / "missing")], "digits", tmp_path / "none.parquet")
    assert {key: getattr(context, key) for key in settings} == before
    seen: list[int] = []
    output = tmp_path / "results.parquet"
    rows, failed = zoo.ray.predict_files([str(folder)], "digits", output, progress=seen.append, batch_size=4)
    assert (rows, failed, sum(seen)) == (len(list(folder.iterdir())), len(BROKEN), rows)
    table = pyarrow.parquet.read_table(output)
    assert table.num_rows == rows and table.column("error").null_count == rows - failed
    assert {key: getattr(context, key) for key in settings} == before
    assert [p.name for p in tmp_path.iterdir()] == [output.name]  # no temporary file left


def test_batches_of_read_images_arrays_are_predicted_as_the_same_arrays(cluster, folder):
    from PIL import Image

    paths = sorted(str(p) for p in folder.iterdir() if p.name not in BROKEN)
    decoded = ray.data.read_images(paths, include_paths=True, mode="RGB", num_cpus=0)
    rows = zoo.ray.predict(decoded, "digits", batch_size=3).take_all()
    assert len(rows) == len(paths)
    for row in rows:
        check_row(row, library(np.asarray(Image.open(row["path"]).convert("RGB"))))


def test_workers_run_onnxruntime_on_the_cpus_ray_gave_them(cluster):
    @ray.remote(num_cpus=2)
    def threads() -> tuple[int | None, int]:
        predictor = zoo.ray.Predictor("digits")
        return zoo.ray.assigned_cpus(), predictor.model.session.session.get_session_options().intra_op_num_threads

    assert ray.get(threads.remote()) == (2, 2)
    assert ray.get(threads.options(num_cpus=1).remote()) == (1, 1)
    assert zoo.ray.assigned_cpus() is None  # the driver: nothing assigned, and a Predictor there still works
    assert zoo.ray.Predictor("digits")({"path": np.array([str(SAMPLE)])}).column("label").to_pylist() == ["7"]


def test_unknown_models_and_options_fail_before_ray_runs_anything(cluster, folder):
    files = zoo.ray.read(str(folder))
    with pytest.raises(zoo.ZooError, match="digits"):
        zoo.ray.predict(files, "digitz")
    with pytest.raises(zoo.UsageError, match="score_threshold"):
        zoo.ray.predict(files, "digits", options={"score_threshold": 0.5})


def test_predict_files_checks_the_name_before_it_starts_or_joins_ray(monkeypatch, folder, tmp_path):
    def started(*args, **kwargs):
        raise AssertionError("Ray was started before the name was checked")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", started)
    with pytest.raises(zoo.UnknownModelError, match="digitz"):
        zoo.ray.predict_files([str(folder)], "digitz", tmp_path / "out.parquet")
    with pytest.raises(zoo.UsageError, match="score_threshold"):
        zoo.ray.predict_files([str(folder)], "digits", tmp_path / "out.parquet", options={"score_threshold": 0.5})


def test_a_batch_gives_path_and_error_as_strings_whether_or_not_an_image_failed(folder):
    predictor = zoo.ray.Predictor("digits")
    for names in (["digit-3.png", "ring.png"], ["notes.png"], []):
        table = predictor({"path": np.array([str(folder / n) for n in names], dtype=object)})
        assert table.schema.field("path").type == table.schema.field("error").type == pyarrow.string(), names
        assert len(table) == len(names)
    assert not zoo.ray._untyped(predictor({"path": np.array([str(folder / "ring.png")])}).schema)  # written at once


def test_a_batch_without_image_columns_is_refused_with_what_to_do():
    with pytest.raises(zoo.ZooInputError, match="read_binary_files"):
        zoo.ray.Predictor("digits")({"id": np.arange(3)})


def test_zoo_predict_ray_writes_one_parquet_row_per_image(folder, tmp_path):
    # the command line starts its own local Ray, in its own process
    output = tmp_path / "results.parquet"
    done = run_zoo("predict", "digits", str(folder), "--ray", "--workers", "2", "--batch-size", "4", "--output",
                   str(output), env={"ZOO_CACHE_DIR": str(tmp_path / "cache"), "RAY_ADDRESS": ""})
    assert done.returncode == 1, done.stderr  # two images failed
    n = len(list(folder.iterdir()))
    assert f"{n} row(s) written to {output}, 2 of them errors" in done.stderr
    assert "execution finished" not in done.stderr  # Ray Data's own log lines, kept for -v
    table = pyarrow.parquet.read_table(output)
    assert table.column_names == ["path", "label", "class_id", "score", "topk", "error"]
    for row in table.to_pylist():
        name = Path(row["path"]).name
        if name in BROKEN:
            assert BROKEN[name] in row["error"]
        else:
            check_row(row, library(folder / name))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_zoo_predict_ray_checks_its_arguments_before_starting_ray(folder, tmp_path):
    missing = run_zoo("predict", "digits", str(folder), "--ray")
    assert missing.returncode == 2 and "--output FILE.parquet" in missing.stderr
    alone = run_zoo("predict", "digits", str(folder), "--output", str(tmp_path / "r.parquet"))
    assert alone.returncode == 2 and "without --ray" in alone.stderr
    saved = run_zoo("predict", "digits", str(folder), "--ray", "--save", str(tmp_path), "--output", "r.parquet")
    assert saved.returncode == 2 and "--save does not go with --ray" in saved.stderr


def test_parquet_columns_that_only_failed_images_left_untyped_take_their_type_later(tmp_path):
    failed = pyarrow.Table.from_pylist([{"path": "a.png", "error": "damaged"}])
    empty = pyarrow.Table.from_pylist([{"path": "b.png", "label": None, "topk": [], "error": None}])
    found = pyarrow.Table.from_pylist([{"path": "c.png", "label": "cat", "topk": [{"label": "cat", "score": 0.9}],
                                        "error": None}])
    output = tmp_path / "out.parquet"
    zoo.ray.write_parquet(iter([failed, empty, found, failed]), output)
    table = pyarrow.parquet.read_table(output)
    assert table.column_names == ["path", "label", "topk", "error"]
    assert table.schema.field("label").type == pyarrow.string()
    assert [r["label"] for r in table.to_pylist()] == [None, None, "cat", None]
    assert table.to_pylist()[2]["topk"] == [{"label": "cat", "score": 0.9}]

    def broken():
        yield found
        raise RuntimeError("the run stopped")

    with pytest.raises(RuntimeError):
        zoo.ray.write_parquet(broken(), tmp_path / "never.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]  # no half-written file


def test_30_02_zoo_predict_ray_gives_the_workers_a_local_checkpoint_by_its_whole_path(tmp_path, monkeypatch):
    from zoo.cli.predict import _whole

    (tmp_path / "ft.pth").write_bytes(b"weights")
    monkeypatch.chdir(tmp_path)
    assert _whole("ft.pth") == str(tmp_path / "ft.pth")  # Ray's workers run in folders of their own
    assert _whole("imagenet1k_v1") == "imagenet1k_v1" and _whole("https://host/ft.pth") == "https://host/ft.pth"
    assert _whole(None) is None


def test_33_5_workers_run_the_runtime_and_precision_they_are_given_on_the_cpus_ray_gave_them(cluster, folder,
                                                                                            monkeypatch):
    pytest.importorskip("openvino")
    given = {"runtime": "openvino", "precision": "int8"}
    rows = zoo.ray.predict(zoo.ray.read(str(folder)), "digits", batch_size=4, **given).take_all()
    answered = [row for row in rows if row["error"] is None]
    assert len(answered) == len(rows) - len(BROKEN)
    here = zoo.get("digits", **given)
    for row in answered:
        check_row(row, here.predict(row["path"]).to_dict())

    @ray.remote(num_cpus=1)
    def where() -> tuple[str, str, int]:
        model = zoo.ray.Predictor("digits", **given).model
        return model.runtime, model.precision, model.session.compiled.get_property("INFERENCE_NUM_THREADS")

    assert ray.get(where.remote()) == ("openvino", "int8", 1)

    rows = zoo.ray.predict(zoo.ray.read(str(folder)), "digits", batch_size=4, runtime="auto").take_all()
    monkeypatch.setattr(zoo.tune, "tune", lambda *a, **k: pytest.fail("not tuned by predict"))
    choice = tuned("digits", threads=1)["choice"]  # tuned once, on the driver, on a worker's threads
    chosen = zoo.get("digits", runtime=choice["runtime"], precision=choice["precision"])
    for row in rows:
        if row["error"] is None:
            check_row(row, chosen.predict(row["path"]).to_dict())
