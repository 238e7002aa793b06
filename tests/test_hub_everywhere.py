"""Issue 32, item 2: a model whose weights are on the Hub, by its Hub name, on every command.

timm's own test network (``timm/test_efficientnet.r160_in1k``) with perturbed random weights that the test
saves with safetensors and serves from a stand-in Hub (``zoo.testing``'s ``local_hub``): ``zoo pull``,
``zoo cache list``, ``NAME/KEY`` with a name that has an owner, ``zoo info``, a real ``zoo serve`` process
answering ``/v1/models/timm/.../predict``, and a bundle imported into an empty cache that predicts with
ZOO_OFFLINE, no huggingface_hub cache and sockets blocked. ``zoo.get`` in this process is the reference.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("zoo_timm")
pytest.importorskip("starlette")
skimage_data = pytest.importorskip("skimage.data")

import cv2
from conftest import run_zoo
from test_bundle import NO_NETWORK
from test_serve import serving

import zoo
from zoo import cache
from zoo.testing import randomize

TAG = "test_efficientnet.r160_in1k"
NAME = f"timm/{TAG}"


@pytest.fixture
def served(local_hub, tmp_path) -> dict[str, Path | str]:
    """The tag's weights on the stand-in Hub, and photos as PNG files."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    network = randomize(timm.create_model(TAG, pretrained=False), zoo.get_spec(NAME))
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(tmp_path / "w.safetensors"))
    sha256 = local_hub.add(NAME, "model.safetensors", (tmp_path / "w.safetensors").read_bytes())
    photos = []
    for name in ("astronaut", "coffee"):
        photos.append(tmp_path / f"{name}.png")
        cv2.imwrite(str(photos[-1]), getattr(skimage_data, name)()[:, :, ::-1])
    return {"sha256": sha256, "commit": local_hub.state.repos[NAME].commit, "photos": photos,
            "hf": Path(os.environ["HF_HUB_CACHE"])}


def test_32_2_a_hub_name_on_every_command(served, zoo_cache_dir, tmp_path):
    pulled = run_zoo("pull", NAME)
    assert pulled.returncode == 0, pulled.stderr
    [entry] = cache.entries(NAME)
    assert entry.folder.parent.name == f"timm--{TAG}"
    assert entry.metadata["weights"]["hub"] == {"repo": NAME, "filename": "model.safetensors", "revision": "main",
                                                "commit": served["commit"]}
    listed = json.loads(run_zoo("cache", "list", "--json").stdout)["models"]
    assert [e["id"] for e in listed] == [f"{NAME}/{entry.key}"] and listed[0]["weights"]["hub"]["commit"]

    library = zoo.get(NAME)  # the reference: the entry pulled, opened here
    expected = [json.loads(json.dumps(library.predict(str(p)).to_dict())) for p in served["photos"]]
    by_key = run_zoo("predict", f"{NAME}/{entry.key}", *map(str, served["photos"]), "--json")
    assert by_key.returncode == 0, by_key.stderr
    assert [line["result"] for line in json.loads(by_key.stdout)] == expected

    info = run_zoo("info", NAME)
    assert info.returncode == 0, info.stderr
    assert f"hf://{NAME}@main/model.safetensors on the Hugging Face Hub" in info.stdout
    assert f"{NAME}/{entry.key}" in info.stdout

    with serving(tmp_path, NAME) as server:
        answers = [server.post(f"/v1/models/{NAME}/predict", p.read_bytes()).json() for p in served["photos"]]
        described = server.get(f"/v1/models/{NAME}").json()
    assert [a["result"] for a in answers] == expected
    assert described["name"] == NAME

    made = tmp_path / "timm.zoo"
    exported = run_zoo("bundle", "export", NAME, "-o", str(made))
    assert exported.returncode == 0, exported.stderr
    elsewhere = {"ZOO_CACHE_DIR": str(tmp_path / "elsewhere"), "HF_HUB_CACHE": str(tmp_path / "no-hf"),
                 "ZOO_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    assert run_zoo("bundle", "import", str(made), env=elsewhere).returncode == 0
    offline = run_zoo("predict", NAME, *map(str, served["photos"]), "--json", code=NO_NETWORK, env=elsewhere)
    assert offline.returncode == 0, offline.stderr
    assert "NETWORK ATTEMPT" not in offline.stderr and "exporting" not in offline.stderr
    assert [line["result"] for line in json.loads(offline.stdout)] == expected
    assert hashlib.sha256((served["hf"] / f"models--timm--{TAG}" / "blobs" / served["sha256"]).read_bytes()
                          ).hexdigest() == served["sha256"]  # the weights were kept in huggingface_hub's cache
