"""zoo bundle: cache entries carried to an offline machine in one archive that is verified before use.

The bundles are real ``zoo bundle export`` output (zoo-digits, float32 and int8), imported into
another empty cache; the hostile ones are written member by member with ``tarfile``, as an
attacker would (the tar path traversal CVEs: absolute paths, ``..``, links).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pytest
from conftest import ROOT, run_zoo, run_zoo_at_terminal

import zoo
from zoo import bundle, cache

if "digits" not in zoo.list_models():
    pytest.skip("the zoo-digits plugin is not installed", allow_module_level=True)

SAMPLE = ROOT / "plugins" / "zoo-digits" / "samples" / "7.png"

#: ``zoo.cli.main`` with every way out to the network replaced by a refusal that says so on stderr.
NO_NETWORK = """
import socket, sys
def refuse(*args, **kwargs):
    print("NETWORK ATTEMPT", args[:2], file=sys.stderr)
    raise OSError("the network is blocked by the test")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.create_connection = socket.getaddrinfo = refuse
import zoo.cli
sys.exit(zoo.cli.main(sys.argv[1:]))
"""


def listing(root: Path) -> dict[str, int]:
    """Every file under ``root`` (locks aside) with its size: what a refused import must leave as it was."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*"))
            if p.is_file() and "locks" not in p.parts}


@pytest.fixture
def made(tmp_path: Path) -> Path:
    """A bundle of digits in float32 and int8, exported from a cache of its own."""
    output = tmp_path / "models.zoo"
    env = {"ZOO_CACHE_DIR": str(tmp_path / "source-cache")}
    for precision in ("fp32", "int8"):
        done = run_zoo("bundle", "export", "digits", "-o", str(output), "--precision", precision, env=env)
        assert done.returncode == 0, done.stderr
        if precision == "fp32":
            output.rename(tmp_path / "fp32.zoo")
    return output


def test_an_imported_bundle_predicts_offline_with_no_network_call(made, zoo_cache_dir, tmp_path):
    manifest = bundle.read_manifest(made)
    assert [e["precision"] for e in manifest["entries"]] == ["int8"] and manifest["zoo"] == zoo.__version__
    assert set(manifest["entries"][0]["files"]) == {cache.METADATA_FILE, cache.MODEL_FILE}  # no optimised graph
    done = run_zoo("bundle", "import", str(made))
    assert done.returncode == 0 and "added" in done.stdout, done.stderr
    [entry] = cache.entries("digits")
    assert entry.ok and entry.key == manifest["entries"][0]["key"]
    predicted = run_zoo("predict", "digits", str(SAMPLE), "--precision", "int8", "--json", code=NO_NETWORK,
                        env={"ZOO_OFFLINE": "1"})
    assert predicted.returncode == 0, predicted.stderr
    assert "NETWORK ATTEMPT" not in predicted.stderr and "quantizing" not in predicted.stderr
    assert json.loads(predicted.stdout)[0]["result"]["label"] == "7"
    assert [e.key for e in cache.entries("digits")] == [entry.key]  # the imported entry, nothing rebuilt
    again = run_zoo("bundle", "import", str(made))
    assert again.returncode == 0 and "already cached" in again.stdout


def test_a_bundle_with_one_flipped_byte_is_refused_and_the_cache_is_unchanged(made, zoo_cache_dir, tmp_path):
    run_zoo("bundle", "import", str(tmp_path / "fp32.zoo"))  # something already in the cache
    before = listing(zoo_cache_dir)
    data = bytearray(made.read_bytes())
    with tarfile.open(made) as archive:
        member = archive.getmember(next(n for n in archive.getnames() if n.endswith(cache.MODEL_FILE)))
    data[member.offset_data + member.size // 2] ^= 0x01
    damaged = tmp_path / "damaged.zoo"
    damaged.write_bytes(bytes(data))
    done = run_zoo("bundle", "import", str(damaged))
    assert done.returncode == 1
    assert member.name in done.stderr and "sha256" in done.stderr and "damaged" in done.stderr
    assert listing(zoo_cache_dir) == before
    data = bytearray(made.read_bytes())
    data[member.offset + 100] ^= 0xFF  # inside the member's tar header (its name field): the checksum fails
    damaged.write_bytes(bytes(data))
    with pytest.raises(bundle.BundleError, match="damaged|not a readable bundle|manifest"):
        bundle.import_bundle(damaged)
    assert listing(zoo_cache_dir) == before


def hostile(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], manifest: dict | None = None) -> Path:
    """A tar at ``path``: a manifest (one digits entry by default) and ``members`` (name and bytes, or a TarInfo)."""
    key = "0123456789abcdef"
    model, metadata = b"not really onnx", b"{}"
    manifest = manifest or {
        "format": bundle.FORMAT, "version": bundle.FORMAT_VERSION, "zoo": zoo.__version__, "entries": [
            {"name": "digits", "key": key, "precision": "fp32", "files": {
                cache.MODEL_FILE: {"size": len(model), "sha256": hashlib.sha256(model).hexdigest()},
                cache.METADATA_FILE: {"size": 2, "sha256": hashlib.sha256(metadata).hexdigest()}}}]}
    with tarfile.open(path, "w") as archive:
        for item in [(bundle.MANIFEST, json.dumps(manifest).encode()),
                     (f"models/digits/{key}/{cache.MODEL_FILE}", model),
                     (f"models/digits/{key}/{cache.METADATA_FILE}", metadata), *members]:
            if isinstance(item, tarfile.TarInfo):
                archive.addfile(item)
                continue
            info = tarfile.TarInfo(item[0])
            info.size = len(item[1])
            archive.addfile(info, io.BytesIO(item[1]))
    return path


def link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(("member", "says"), [
    (("../escaped.onnx", b"x"), "points outside"),
    (("models/digits/../../../escaped.onnx", b"x"), "points outside"),
    (("/tmp/escaped.onnx", b"x"), "absolute path"),
    (link("models/digits/0123456789abcdef/extra.onnx", "/etc/passwd", tarfile.SYMTYPE), "is a link"),
    (link("models/digits/0123456789abcdef/hard.onnx", "/etc/passwd", tarfile.LNKTYPE), "is a link"),
    (("models/digits/0123456789abcdef/unlisted.onnx", b"x"), "not listed in the manifest"),
    (link("models/digits/fifo", "", tarfile.FIFOTYPE), "not a plain file"),
])
def test_unsafe_members_are_refused_by_name_and_nothing_is_written(zoo_cache_dir, tmp_path, member, says):
    path = hostile(tmp_path / "hostile.zoo", [member])
    name = member.name if isinstance(member, tarfile.TarInfo) else member[0]
    with pytest.raises(bundle.BundleError, match=says) as refused:
        bundle.import_bundle(path)
    assert repr(name) in str(refused.value)
    assert listing(zoo_cache_dir) == {} and not (tmp_path / "escaped.onnx").exists()


def test_a_manifest_that_names_files_outside_or_another_zoo_version_is_refused(zoo_cache_dir, tmp_path):
    good = {"size": 1, "sha256": "0" * 64}
    entry = {"name": "digits", "key": "0123456789abcdef", "files": {cache.MODEL_FILE: good, cache.METADATA_FILE: good}}
    base = {"format": bundle.FORMAT, "version": bundle.FORMAT_VERSION, "zoo": zoo.__version__}
    cases = [
        ({**base, "entries": [{**entry, "name": "../digits"}]}, "not a model name"),
        ({**base, "entries": [{**entry, "key": "../../etc"}]}, "not a cache key"),
        ({**base, "entries": [{**entry, "files": {**entry["files"], "../x": good}}]}, "not a plain file name"),
        ({**base, "version": 99, "entries": []}, "version 99"),
        ({**base, "zoo": "0.0.1", "entries": []}, "made by onnx-zoo 0.0.1"),
    ]
    for number, (manifest, says) in enumerate(cases):
        with pytest.raises(bundle.BundleError, match=says):
            bundle.import_bundle(hostile(tmp_path / f"{number}.zoo", [], manifest))
    assert listing(zoo_cache_dir) == {}


def test_bundle_list_and_errors_for_what_is_not_a_bundle(made, tmp_path):
    shown = run_zoo("bundle", "list", str(made), "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["entries"][0]["name"] == "digits"
    (tmp_path / "photo.zoo").write_bytes(SAMPLE.read_bytes())
    for path, says in ((tmp_path / "photo.zoo", "not a readable bundle"), (tmp_path / "none.zoo", "does not exist")):
        done = run_zoo("bundle", "import", str(path))
        assert done.returncode == 1 and says in done.stderr, done.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_at_a_terminal_export_and_import_show_their_bytes(tmp_path):
    env = {"ZOO_CACHE_DIR": str(tmp_path / "cache")}
    code, output = run_zoo_at_terminal("bundle", "export", "digits", "-o", str(tmp_path / "m.zoo"), env=env)
    assert code == 0 and b"wrote 1 entry" in output and re.search(rb"/\d+\.\dk \[.*B/s\]", output), output[-2000:]
    code, output = run_zoo_at_terminal("bundle", "import", str(tmp_path / "m.zoo"),
                                       env={"ZOO_CACHE_DIR": str(tmp_path / "other")})
    assert code == 0 and b"added" in output and re.search(rb"/\d+\.\dk \[.*B/s\]", output), output[-2000:]


def test_an_entry_exported_with_other_library_versions_is_used_only_where_this_machine_cannot_export(
        zoo_cache_dir, monkeypatch):
    pytest.importorskip("torch")
    from tinymodels import tiny_spec

    from zoo import convert

    made = zoo.get(tiny_spec(), weights="random").path.parent
    metadata = json.loads((made / cache.METADATA_FILE).read_text())
    metadata["key_inputs"]["source"]["versions"]["torch"] = "1.0.0"  # exported elsewhere, with another torch
    (made / cache.METADATA_FILE).write_text(json.dumps(metadata))
    elsewhere = made.with_name("0123456789abcdef")
    made.rename(elsewhere)  # under the key that machine computed
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert zoo.get(tiny_spec(), weights="random").path.parent == elsewhere  # offline: it cannot export, so it uses that entry
    other = convert.plan(tiny_spec(), "random")
    other["spec"]["atol"] = 1.0  # an entry of another spec is not taken for this one
    assert convert.exported_elsewhere("tiny", other) is None
    monkeypatch.delenv("ZOO_OFFLINE")
    rebuilt = zoo.get(tiny_spec(), weights="random").path.parent  # online, with torch: exported again with this machine's versions
    assert rebuilt != elsewhere and {e.folder for e in cache.entries("tiny")} == {elsewhere, rebuilt}


# -- issue 28: import verifies what a build verifies; malformed manifests; leftovers -------------------------------


def members_of(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers()}


def repacked(path: Path, members: dict[str, bytes]) -> Path:
    """A bundle of ``members`` whose manifest and metadata records are rewritten to match their bytes, as an
    attacker who read the format would write it."""
    manifest = json.loads(members[bundle.MANIFEST])
    for entry in manifest["entries"]:
        folder = f"models/{entry['name']}/{entry['key']}/"
        metadata = json.loads(members[folder + cache.METADATA_FILE])
        for name in metadata["files"]:
            data = members[folder + name]
            metadata["files"][name].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
        members[folder + cache.METADATA_FILE] = json.dumps(metadata).encode()
        entry["files"] = {name: {"size": len(members[folder + name]),
                                 "sha256": hashlib.sha256(members[folder + name]).hexdigest()}
                          for name in [*metadata["files"], cache.METADATA_FILE]}
    members[bundle.MANIFEST] = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def escaping(model: bytes) -> bytes:
    """``model`` with its first weight tensor stored as external data at a path that climbs out of the entry."""
    import onnx
    from onnx.external_data_helper import set_external_data

    proto = onnx.load_from_string(model)
    tensor = proto.graph.initializer[0]
    set_external_data(tensor, location="../../../../out/SECRET.bin", offset=0, length=len(tensor.raw_data))
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    return proto.SerializeToString()


def test_28_08_import_refuses_external_data_outside_the_entry_and_a_key_that_is_not_its_own(
        zoo_cache_dir, tmp_path):
    fp32 = tmp_path / "fp32.zoo"
    run_zoo("bundle", "export", "digits", "-o", str(fp32), env={"ZOO_CACHE_DIR": str(tmp_path / "source")})
    members = members_of(fp32)
    (model_name,) = [n for n in members if n.endswith(cache.MODEL_FILE)]
    members[model_name] = escaping(members[model_name])
    done = run_zoo("bundle", "import", str(repacked(tmp_path / "escape.zoo", dict(members))))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "external data at '../../../../out/SECRET.bin', outside its folder" in done.stderr
    assert listing(zoo_cache_dir) == {}

    members = members_of(fp32)  # the real entry, planted under another key
    key = model_name.split("/")[2]
    moved = {n.replace(key, "f" * 16): data for n, data in members.items()}
    manifest = json.loads(moved[bundle.MANIFEST])
    manifest["entries"][0]["key"] = "f" * 16
    moved[bundle.MANIFEST] = json.dumps(manifest).encode()
    done = run_zoo("bundle", "import", str(repacked(tmp_path / "planted.zoo", moved)))
    assert done.returncode == 1 and "not the entry its name says" in done.stderr
    assert listing(zoo_cache_dir) == {}


def test_28_08_verify_finds_an_entry_whose_model_points_outside_it(zoo_cache_dir):
    model = zoo.get("digits")
    folder = model.path.parent
    model.path.write_bytes(escaping(model.path.read_bytes()))
    metadata = cache.read_metadata(folder)
    metadata["files"][cache.MODEL_FILE] = cache.file_record(model.path)  # as if it had been built so
    (folder / cache.METADATA_FILE).write_text(json.dumps(metadata))
    done = run_zoo("cache", "verify")
    assert done.returncode == 1 and f"DAMAGED     {model.path}" in done.stdout
    assert "outside its folder" in done.stderr


@pytest.mark.parametrize(("manifest", "says"), [
    (b"{not json", "is not JSON"),
    (json.dumps({"format": bundle.FORMAT, "version": bundle.FORMAT_VERSION, "zoo": zoo.__version__,
                 "entries": [5]}).encode(), "has 5 as entries[0], where an object"),
])
def test_28_09_a_malformed_manifest_is_a_bundle_error_naming_the_field(zoo_cache_dir, tmp_path, manifest, says):
    path = tmp_path / "bad.zoo"
    with tarfile.open(path, "w") as archive:
        info = tarfile.TarInfo(bundle.MANIFEST)
        info.size = len(manifest)
        archive.addfile(info, io.BytesIO(manifest))
    for command in ("import", "list"):
        done = run_zoo("bundle", command, str(path))
        assert done.returncode == 1 and says in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert listing(zoo_cache_dir) == {}


def test_28_09_a_full_disk_and_a_read_only_cache_are_said_as_such(made, zoo_cache_dir, tmp_path, monkeypatch):
    import errno
    import os

    real_open = Path.open

    def full(self, mode="r", *args, **kwargs):  # every file the import writes fails as on a full disk
        file = real_open(self, mode, *args, **kwargs)
        if "w" in mode and cache.TEMP_PREFIX in str(self):
            def write(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            file.write = write
        return file

    monkeypatch.setattr(Path, "open", full)
    with pytest.raises(bundle.BundleError, match="is full .* ZOO_CACHE_DIR .* nothing was added") as refused:
        bundle.import_bundle(made)
    assert "copy it again" not in str(refused.value)
    monkeypatch.undo()
    assert not [p for p in zoo_cache_dir.rglob("*") if p.is_file() and "locks" not in p.parts]

    in_the_way = tmp_path / "a-file"  # a cache that cannot be written (chmod would not stop root)
    in_the_way.write_text("")
    done = run_zoo("bundle", "import", str(made), env={"ZOO_CACHE_DIR": str(in_the_way / "cache")})
    assert done.returncode != 0 and "cannot write to the cache" in done.stderr, done.stderr
    assert "cannot read the bundle" not in done.stderr and "Traceback" not in done.stderr


KILLED_IMPORT = """
import os, sys
from pathlib import Path
from zoo import bundle
real = bundle._copy_checked
def copy_then_die(*args, **kwargs):
    real(*args, **kwargs)
    os._exit(9)  # killed half-way: its staging folder stays
bundle._copy_checked = copy_then_die
bundle.import_bundle(Path(sys.argv[1]))
"""


def test_28_10_prune_and_clear_remove_a_killed_imports_staging_and_verify_calls_a_build_incomplete(
        made, zoo_cache_dir):
    assert run_zoo(str(made), code=KILLED_IMPORT).returncode == 9
    (staging,) = cache.staging_folders()
    assert any(p.is_file() for p in staging.rglob("*"))
    assert run_zoo("cache", "prune").returncode == 0
    assert cache.staging_folders() == []
    assert run_zoo(str(made), code=KILLED_IMPORT).returncode == 9
    assert run_zoo("cache", "clear", "--yes").returncode == 0 and cache.staging_folders() == []

    interrupted = cache.entry_dir("digits", "0123456789abcdef")
    cache.new_temp_dir(cache.make_dirs(interrupted))  # a build killed before it committed anything
    done = run_zoo("cache", "verify")
    assert done.returncode == 0 and "0 damaged" in done.stderr
    assert f"incomplete  {interrupted / cache.MODEL_FILE}  (an interrupted build: rebuilt on next use)" in done.stdout


def test_30_03_bundle_export_of_name_key_packs_that_entry_alone(zoo_cache_dir, tmp_path):
    fp32 = zoo.get("digits")
    int8 = zoo.get("digits", precision="int8")  # a second entry of the same name
    output = tmp_path / "one.zoo"
    done = run_zoo("bundle", "export", f"digits/{int8.path.parent.name}", "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert [(e["name"], e["key"]) for e in bundle.read_manifest(output)["entries"]] == [
        ("digits", int8.path.parent.name)]
    assert fp32.path.parent.name != int8.path.parent.name


def test_33_2_an_int8_bundle_of_a_model_its_task_compares_carries_its_float32_source(tmp_path, zoo_cache_dir,
                                                                                      monkeypatch):
    pytest.importorskip("onnx")
    import dataclasses

    from test_quantize import gemm_classifier

    from zoo import gate
    from zoo.registry import reset_default_registry

    embedder = dataclasses.replace(gemm_classifier(tmp_path, ties=False), task="image-embedding",
                                   int8={"min_agreement": 0.0, "max_difference": 1.0})  # it passes, loosely
    int8 = zoo.get(embedder, precision="int8")
    [entry] = [e for e in cache.entries(embedder.name) if e.folder == int8.path.parent]
    chosen = bundle.with_sources([entry])
    assert [cache.precision_of(e.metadata) for e in chosen] == ["int8", "fp32"]
    assert chosen[1].key == int8.metadata["source_entry"]
    bundle.export_bundle(chosen, tmp_path / "int8.zoo")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "offline-cache"))  # another machine: its own cache, and
    monkeypatch.setattr(gate, "machine_key", lambda: "another-machine")  # no check of its own recorded yet
    reset_default_registry()
    bundle.import_bundle(tmp_path / "int8.zoo")
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    there = zoo.get(embedder, precision="int8")  # compared there with the float32 entry the bundle carried
    assert there.path.parent.name == entry.key and len(there.metadata["checks"]) == 2  # this machine's, the other's
    assert there.metadata["checks"][gate.check_key("onnxruntime", "int8")]["refused"] is None
