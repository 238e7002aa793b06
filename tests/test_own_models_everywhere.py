"""Issue 30, items 2, 3 and 6: your checkpoint and your ONNX file on every command (serve, Ray, pull, bundles, info).

One checkpoint is made here: resnet18 fine-tuned for seven classes, perturbed random weights
(``zoo.testing.randomize``) saved with ``torch.save``. The library's ``zoo.get`` with it is the
reference each other way in must answer exactly as.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
requests = pytest.importorskip("requests")
pytest.importorskip("starlette")
skimage_data = pytest.importorskip("skimage.data")

import cv2
from conftest import run_zoo
from test_bundle import NO_NETWORK
from test_serve import chromium, serving

import zoo
from zoo import bundle, cache
from zoo.testing import randomize

CLASSES = ("ant", "bee", "cat", "dog", "eel", "fox", "gnu")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint, its labels file, photos as PNG files, and a cache of their own (shared with the servers)."""
    folder = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    module = randomize(torchvision.models.resnet18(num_classes=len(CLASSES)), zoo.get_spec("resnet18"))
    torch.save(module.state_dict(), folder / "ft.pth")
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    for name in ("astronaut", "coffee", "chelsea"):
        cv2.imwrite(str(folder / f"{name}.png"), getattr(skimage_data, name)()[:, :, ::-1])
    return {"folder": folder, "weights": folder / "ft.pth", "labels": folder / "labels.txt",
            "photos": sorted(folder.glob("*.png")), "cache": folder / "cache"}


@pytest.fixture(scope="module")
def library(made: dict[str, Path]) -> zoo.Model:
    """``zoo.get`` with the checkpoint, built in the cache the commands below are given."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ZOO_CACHE_DIR", str(made["cache"]))
        return zoo.get("resnet18", weights=made["weights"], labels=CLASSES)


def expected(library: zoo.Model, made: dict[str, Path]) -> list[dict]:
    return [json.loads(json.dumps(library.predict(str(p)).to_dict())) for p in made["photos"]]


def test_30_02_a_checkpoint_served_by_name_answers_as_get_with_it_and_says_whose_weights(made, library):
    env = {"ZOO_CACHE_DIR": str(made["cache"])}
    with serving(made["folder"], f"resnet18={made['weights']}", "--labels", str(made["labels"]),
                 env=env) as server:
        answers = [server.post("/v1/models/resnet18/predict", p.read_bytes()).json() for p in made["photos"]]
        listed = server.get("/v1/models").json()["models"]
        info = server.get("/v1/models/resnet18").json()
    assert [a["result"] for a in answers] == expected(library, made)
    assert {a["result"]["label"] for a in answers} <= set(CLASSES)
    [line] = listed
    assert line["weights"]["file"] == "ft.pth" and line["weights"]["sha256"] == cache.sha256_of(made["weights"])
    assert line["parity"]["logits"]["top1_agreement"] == 1.0 and "ft.pth" in line["summary"]
    assert info["metrics"] == {} and info["built"]["weights"]["file"] == "ft.pth"  # the published top-1 is not its
    assert info["built"]["path"] == str(library.path) and "parity" in info["built"]


@pytest.fixture(scope="module")
def exported(made: dict[str, Path], library: zoo.Model) -> Path:
    """The fine-tuned model written out by ``zoo export -o``: a self-describing file, away from the cache."""
    path = made["folder"] / "out" / "pets.onnx"
    done = run_zoo("export", "resnet18", "--weights", str(made["weights"]), "--labels", str(made["labels"]),
                   "-o", str(path), env={"ZOO_CACHE_DIR": str(made["cache"])})
    assert done.returncode == 0, done.stderr
    return path


def test_30_02_a_models_file_serves_a_checkpoint_under_an_alias_and_a_file_and_the_page_shows_their_weights(
        made, library, exported):
    spec_file = made["folder"] / "serve.toml"
    spec_file.write_text('[models.pets]\nmodel = "resnet18"\nweights = "ft.pth"\nlabels = "labels.txt"\n\n'
                         '[models.file]\nmodel = "out/pets.onnx"\n')
    with serving(made["folder"], "--models", str(spec_file), "digits",
                 env={"ZOO_CACHE_DIR": str(made["cache"])}) as server:
        for name in ("pets", "file"):
            answers = [server.post(f"/v1/models/{name}/predict", p.read_bytes()).json() for p in made["photos"]]
            assert [a["result"] for a in answers] == expected(library, made), name
            assert {a["model"] for a in answers} == {name}
        listed = {m["name"]: m for m in server.get("/v1/models").json()["models"]}
        as_path = server.get("/v1/models/pets.onnx")  # a URL's name is looked up, never opened as a file
        assert as_path.status_code == 404 and as_path.json()["error"]["kind"] == "UnknownModelError", as_path.text
        assert server.get("/v1/models/pets").json()["built"]["weights"]["file"] == "ft.pth"
        about = page_about(server.url, "pets") if shutil.which("chromium") else None
    assert sorted(listed) == ["digits", "file", "pets"]
    assert listed["pets"]["weights"]["file"] == "ft.pth" and listed["digits"]["weights"] is None
    assert listed["file"]["summary"].startswith("resnet18 from the ONNX file pets.onnx")
    if about is None:
        pytest.skip("no chromium: the page's lines were not checked (apt-get install -y chromium)")
    assert "weights: ft.pth (sha256 " + cache.sha256_of(made["weights"])[:16] in about
    assert "parity with PyTorch, logits: max abs diff" in about and "top-1 agreement 100%" in about


def page_about(url: str, model: str) -> str:
    """What the server's page says about ``model`` once it is chosen, in a real (headless) browser."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(url + "/")
            page.wait_for_selector(f"#model option[value={model}]", state="attached")
            page.select_option("#model", model)
            return page.inner_text("#about")
        finally:
            browser.close()


def test_30_01_an_exported_file_predicts_on_ray_as_in_the_library(made, library, exported):
    ray = pytest.importorskip("ray")
    import zoo.ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        rows = zoo.ray.predict(zoo.ray.read([str(p) for p in made["photos"]]), exported).take_all()
    finally:
        ray.shutdown()
    by_path = {Path(row["path"]).name: row for row in rows}
    for photo, want in zip(made["photos"], expected(library, made)):
        row = by_path[photo.name]
        assert row["error"] is None and row["label"] == want["label"] and row["class_id"] == want["class_id"]
        assert abs(row["score"] - want["score"]) < 1e-9


def test_30_03_a_bundle_of_your_checkpoints_entry_predicts_by_key_offline_without_the_checkpoint(
        made, library, tmp_path):
    output = tmp_path / "pets.zoo"
    env = {"ZOO_CACHE_DIR": str(made["cache"])}
    done = run_zoo("bundle", "export", "resnet18", "--weights", str(made["weights"]), "--labels",
                   str(made["labels"]), "-o", str(output), env=env)
    assert done.returncode == 0, done.stderr
    [entry] = bundle.read_manifest(output)["entries"]  # that entry alone, not every resnet18 in the cache
    assert (entry["name"], entry["key"]) == ("resnet18", library.path.parent.name)
    elsewhere = {"ZOO_CACHE_DIR": str(tmp_path / "offline-cache"), "ZOO_OFFLINE": "1"}
    assert run_zoo("bundle", "import", str(output), env=elsewhere).returncode == 0
    predicted = run_zoo("predict", f"resnet18/{entry['key']}", *map(str, made["photos"]), "--json",
                        code=NO_NETWORK, env=elsewhere)  # nothing names the checkpoint: the entry is the model
    assert predicted.returncode == 0, predicted.stderr
    assert "NETWORK ATTEMPT" not in predicted.stderr and "export" not in predicted.stderr
    assert [row["result"] for row in json.loads(predicted.stdout)] == expected(library, made)


def test_30_06_info_with_your_weights_shows_the_checkpoint_and_parity_not_the_published_metrics(made, library):
    env = {"ZOO_CACHE_DIR": str(made["cache"])}
    args = ("info", "resnet18", "--weights", str(made["weights"]), "--labels", str(made["labels"]))
    data = json.loads(run_zoo(*args, "--json", env=env).stdout)
    assert data["metrics"] == {} and data["num_labels"] == len(CLASSES)
    assert data["built"]["id"] == f"resnet18/{library.path.parent.name}"
    assert data["built"]["weights"]["sha256"] == cache.sha256_of(made["weights"])
    text = run_zoo(*args, env=env).stdout
    assert f"given: {made['weights']}" in text and "your ft.pth (sha256 " in text
    assert "logits: max abs diff" in text and "acc@1" not in text and "metrics of the published" not in text
    published = run_zoo("info", "resnet18", env=env).stdout
    assert "acc@1" in published  # the name alone still shows torchvision's figures


def test_30_02_weights_for_several_models_are_refused_before_anything_runs(made):
    for args in (("pull", "resnet1*"), ("bundle", "export", "resnet1*", "-o", "x.zoo"), ("serve", "resnet18", "digits")):
        done = run_zoo(*args, "--weights", str(made["weights"]), env={"ZOO_CACHE_DIR": str(made["cache"])})
        assert done.returncode == 2 and "--weights goes with one model" in done.stderr, (args, done.stderr)


def test_30_02_the_models_file_and_names_say_what_is_wrong(tmp_path):
    from zoo.errors import UsageError
    from zoo.serve.models import Served, from_text, from_toml

    assert from_text("resnet50=ft.pth", sha256="ab" * 32) == Served("resnet50", "resnet50",
                                                                     {"weights": "ft.pth", "sha256": "ab" * 32})
    assert from_text("det=runs/best.onnx") == Served("det", "runs/best.onnx")
    assert from_text("runs/lr=0.1/best.onnx") == Served("", "runs/lr=0.1/best.onnx")
    assert from_text("runs/best.onnx") == Served("", "runs/best.onnx")
    with pytest.raises(UsageError, match="NAME=WEIGHTS"):
        from_text("=ft.pth")
    with pytest.raises(UsageError, match="cannot name a served model"):
        from_text("Bad Name=x.onnx")
    bad = tmp_path / "serve.toml"
    bad.write_text('[models.pets]\nweight = "ft.pth"\n')
    with pytest.raises(UsageError, match=r"weight is not an argument.*in .*serve.toml"):
        from_toml(bad)
    (tmp_path / "labels.txt").write_text("a\nb\n")
    bad.write_text('[models.pets]\nmodel = "resnet18"\nweights = "imagenet1k_v1"\nlabels = "labels.txt"\n')
    assert from_toml(bad) == [Served("pets", "resnet18", {"weights": "imagenet1k_v1", "labels": ["a", "b"]})]
