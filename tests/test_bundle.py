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
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


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

    made = zoo.get(tiny_spec()).path.parent
    metadata = json.loads((made / cache.METADATA_FILE).read_text())
    metadata["key_inputs"]["source"]["versions"]["torch"] = "1.0.0"  # exported elsewhere, with another torch
    (made / cache.METADATA_FILE).write_text(json.dumps(metadata))
    elsewhere = made.with_name("0123456789abcdef")
    made.rename(elsewhere)  # under the key that machine computed
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    assert zoo.get(tiny_spec()).path.parent == elsewhere  # offline: it cannot export, so it uses that entry
    other = convert.plan(tiny_spec())
    other["spec"]["atol"] = 1.0  # an entry of another spec is not taken for this one
    assert convert.exported_elsewhere("tiny", other) is None
    monkeypatch.delenv("ZOO_OFFLINE")
    rebuilt = zoo.get(tiny_spec()).path.parent  # online, with torch: exported again with this machine's versions
    assert rebuilt != elsewhere and {e.folder for e in cache.entries("tiny")} == {elsewhere, rebuilt}
