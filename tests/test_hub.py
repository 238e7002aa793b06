"""Weights on the Hugging Face Hub (issue 32, item 2), fetched through huggingface_hub from a local server that
serves a repository as the Hub does (``HF_ENDPOINT``), with weights the test makes."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from tinymodels import LABELS, make_net, tiny_spec

import zoo
from zoo import cache
from zoo.convert import sample_photo
from zoo.errors import ChecksumError, OfflineError, WeightsError

pytest.importorskip("torch")
pytest.importorskip("huggingface_hub")
pytest.importorskip("safetensors")

REPO = "acme/tiny-net"


def safetensors_bytes(tmp_path: Path, scale: float = 1.0) -> bytes:
    from safetensors.torch import save_file

    state = {k: (v * scale if v.is_floating_point() else v).contiguous() for k, v in make_net().state_dict().items()}
    path = tmp_path / f"w{scale}.safetensors"
    save_file(state, str(path))
    return path.read_bytes()


def hub_spec(revision: str = "main") -> zoo.ModelSpec:
    return tiny_spec(name="acme/tiny", weights=zoo.HubFile(REPO, revision=revision))


@pytest.fixture
def hub(local_hub, tmp_path):
    local_hub.add(REPO, "model.safetensors", safetensors_bytes(tmp_path))
    return local_hub


def scores(result) -> np.ndarray:
    return np.array([p.score for p in sorted(result.topk, key=lambda p: p.class_id)])


def hf_cache() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("the network is blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_32_2_weights_come_through_huggingface_hub_into_its_cache(hub, tmp_path):
    model = zoo.get(hub_spec())
    result = model.predict(sample_photo())
    assert result.label in LABELS
    sha256 = hashlib.sha256(hub.state.repos[REPO].files["model.safetensors"]).hexdigest()
    blob = hf_cache() / "models--acme--tiny-net" / "blobs" / sha256
    assert blob.is_file()  # huggingface_hub's cache holds the file, under its LFS object id
    assert not (cache.cache_root() / "downloads").exists() or not any((cache.cache_root() / "downloads").iterdir())
    [entry] = cache.entries("acme/tiny")
    record = entry.metadata["weights"]
    commit = hub.state.repos[REPO].commit
    assert record["sha256"] == sha256 and record["tag"] == "default"
    assert record["hub"] == {"repo": REPO, "filename": "model.safetensors", "revision": "main", "commit": commit}
    assert entry.metadata["key_inputs"]["source"]["weights_sha256"] == sha256
    assert entry.folder.parent.name == "acme--tiny"
    # the same weights as a local file give the same predictions
    local = tmp_path / "same.safetensors"
    local.write_bytes(hub.state.repos[REPO].files["model.safetensors"])
    mine = zoo.get(hub_spec(), weights=local).predict(sample_photo())
    assert np.allclose(scores(mine), scores(result), atol=1e-6)


def test_32_2_a_wrong_hash_is_refused_and_removed_from_the_hub_cache(hub):
    hub.set_mode("wrong")
    with pytest.raises(ChecksumError, match=r"model.safetensors of acme/tiny-net.*expected sha256"):
        zoo.get(hub_spec())
    assert not list((hf_cache() / "models--acme--tiny-net" / "blobs").glob("*"))  # no broken file is kept
    assert not cache.entries("acme/tiny")
    hub.set_mode("ok")
    assert zoo.get(hub_spec()).predict(sample_photo()).label in LABELS


def test_32_2_a_sha256_given_in_the_spec_must_be_the_hubs(hub):
    spec = tiny_spec(name="acme/tiny", weights=zoo.HubFile(REPO, sha256="ab" * 32))
    with pytest.raises(ChecksumError, match="the repository changed"):
        zoo.get(spec)


def test_32_2_offline_from_the_hub_cache_with_sockets_blocked(hub, monkeypatch):
    first = zoo.get(hub_spec()).predict(sample_photo())
    shutil.rmtree(cache.cache_root() / "models")  # the export is made again, from huggingface_hub's cache alone
    hub.__exit__()
    no_network(monkeypatch)
    for variable in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(variable, "1")
        again = zoo.get(hub_spec()).predict(sample_photo())
        assert np.allclose(scores(again), scores(first), atol=1e-6)
        monkeypatch.delenv(variable)


def test_32_2_the_hub_unreachable_falls_back_to_its_cache(hub, caplog):
    zoo.get(hub_spec())
    hub.set_mode("down")
    assert zoo.get(hub_spec()).predict(sample_photo()).label in LABELS
    assert "cannot be reached" in caplog.text


def test_32_2_an_entry_opens_offline_without_the_weights(hub, monkeypatch):
    """A bundle imported elsewhere has the ONNX file and no weights: the entry's record pins the revision."""
    first = zoo.get(hub_spec()).predict(sample_photo())
    shutil.rmtree(hf_cache())
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    no_network(monkeypatch)
    again = zoo.get(hub_spec()).predict(sample_photo())
    assert np.allclose(scores(again), scores(first))


def test_32_2_nowhere_to_be_found_says_what_to_do(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as error:
        zoo.get(hub_spec())
    message = str(error.value)
    for part in ("HF_HUB_OFFLINE is set", "model.safetensors of acme/tiny-net", "ZOO_OFFLINE", "weights=FILE"):
        assert part in message


@pytest.mark.parametrize(("change", "expected"), [
    ("gated", "gated repository.*HF_TOKEN"),
    ("repo", "no repository 'acme/other'"),
    ("revision", "no revision 'v9'"),
    ("file", "no file 'other.safetensors'"),
])
def test_32_2_what_the_hub_refuses_is_explained(hub, change, expected):
    weights = {"repo": zoo.HubFile("acme/other"), "revision": zoo.HubFile(REPO, revision="v9"),
               "file": zoo.HubFile(REPO, filename="other.safetensors")}.get(change, zoo.HubFile(REPO))
    if change == "gated":
        hub.set_mode("gated")
    with pytest.raises(WeightsError, match=expected):
        zoo.get(tiny_spec(name="acme/tiny", weights=weights))


def test_32_2_the_key_follows_the_file_not_the_commit(hub, tmp_path):
    """A commit that leaves the weights as they were reuses the export; new weights make a new entry."""
    zoo.get(hub_spec())
    hub.add(REPO, "README.md", b"new text")  # a new commit, the same weights
    zoo.get(hub_spec())
    [entry] = cache.entries("acme/tiny")
    hub.add(REPO, "model.safetensors", safetensors_bytes(tmp_path, scale=0.5))
    zoo.get(hub_spec())
    entries = cache.entries("acme/tiny")
    assert len(entries) == 2
    commits = {e.metadata["weights"]["hub"]["commit"] for e in entries}
    assert hub.state.repos[REPO].commit in commits and len(commits) == 2


def test_32_2_a_revision_pinned_by_commit(hub):
    commit = hub.state.repos[REPO].commit
    zoo.get(hub_spec(revision=commit))
    [entry] = cache.entries("acme/tiny")
    assert entry.metadata["weights"]["hub"]["commit"] == commit


def test_32_2_hub_file_fields_are_checked():
    for bad in ({"repo": "no-owner"}, {"repo": "a/b/c"}, {"repo": "a/b", "filename": "../x"},
                {"repo": "a/b", "sha256": "xyz"}):
        with pytest.raises(zoo.SpecError):
            zoo.HubFile(**bad)
    spec = tiny_spec(name="acme/tiny", weights={"repo": REPO, "filename": "w.safetensors"})
    assert spec.weights == zoo.HubFile(REPO, "w.safetensors")


def test_32_2_an_endpoint_that_refuses_connections_is_the_hub_unreachable(hub, monkeypatch):
    """huggingface_hub 2 raises httpx's errors, which are not OSError: the zoo still falls back to the cache, and
    says what to do when the file is not there."""
    zoo.get(hub_spec())
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert zoo.get(hub_spec()).predict(sample_photo()).label in LABELS
    shutil.rmtree(hf_cache())
    shutil.rmtree(cache.cache_root() / "models")
    with pytest.raises(OfflineError, match="the Hub cannot be reached and model.safetensors of acme/tiny-net"):
        zoo.get(hub_spec())


def test_32_2_describing_a_hub_model_needs_neither_the_hub_nor_its_cache(hub, monkeypatch):
    """What zoo info shows: offline and with nothing cached, the model is not built; once built, its entry."""
    from zoo.model import describe

    monkeypatch.setenv("ZOO_OFFLINE", "1")  # not HF_HUB_OFFLINE: huggingface_hub reads it once, when imported
    assert describe(hub_spec())[1] is None
    monkeypatch.delenv("ZOO_OFFLINE")
    model = zoo.get(hub_spec())
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert describe(hub_spec())[1].path == model.path


def test_32_2_your_weights_on_the_hub_by_their_hf_url(hub):
    """weights='hf://OWNER/NAME[@REVISION]/FILE', as huggingface_hub's file system names a file: the user's
    weights (no published metrics), pinned and verified as a spec's are."""
    plain = tiny_spec(name="acme/plain")  # a model with no published weights
    model = zoo.get(plain, weights=f"hf://{REPO}@main/model.safetensors")
    assert model.predict(sample_photo()).label in LABELS and "the published metrics do not apply" in model.spec.summary
    [entry] = cache.entries("acme/plain")
    assert entry.metadata["weights"]["tag"] is None
    assert entry.metadata["weights"]["location"] == f"hf://{REPO}@{hub.state.repos[REPO].commit}/model.safetensors"
    with pytest.raises(zoo.SpecError, match="names no file"):
        zoo.get(plain, weights=f"hf://{REPO}")
    with pytest.raises(WeightsError, match="other"):  # another revision of the spec's own file is not its own
        zoo.get(hub_spec(), weights=zoo.HubFile(REPO, revision="other"))
