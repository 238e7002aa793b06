"""zoo serve: the real server, started as a process on a free 127.0.0.1 port, answered over HTTP.

The model is zoo-digits' prebuilt ONNX file (no torch, nothing to download), so these run in
the torch-free job as well.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo import images

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
requests = pytest.importorskip("requests")
cv2 = pytest.importorskip("cv2")

if "digits" not in zoo.list_models():
    pytest.skip("the zoo-digits plugin is not installed", allow_module_level=True)


def digit_pngs(count: int) -> list[bytes]:
    """``count`` of scikit-learn's handwritten digits as PNG files, dark ink on white, 32x32."""
    from sklearn.datasets import load_digits

    pixels = load_digits().images[:count]
    return [cv2.imencode(".png", cv2.resize((255 - p * 255 / 16).astype(np.uint8), (32, 32),
                                            interpolation=cv2.INTER_NEAREST))[1].tobytes() for p in pixels]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, process: subprocess.Popen[str], url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, data: bytes | None = None, content_type: str = "image/png", **kwargs) -> requests.Response:
        headers = {"Content-Type": content_type, **kwargs.pop("headers", {})}
        return requests.post(self.url + path, data=data, headers=headers, timeout=30, **kwargs)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextmanager
def serving(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``zoo serve ARGS`` in a subprocess, ready (``/readyz`` 200); stopped with SIGTERM, which it must finish
    cleanly (uvicorn then re-raises the signal: the status is that of a SIGTERM)."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", *args, "--port", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the server exited: {log.read_text()}"
            try:
                if server.get("/readyz").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"not ready in 60 s: {log.read_text()}"
            time.sleep(0.1)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert code == -signal.SIGTERM and "Application shutdown complete" in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    with serving(folder, "digits", "--max-body", "300000", "--max-batch-size", "8", "--max-wait-ms", "2",
                 env={"ZOO_CACHE_DIR": str(folder / "cache")}) as server:
        yield server


@pytest.fixture(scope="module")
def library() -> zoo.Model:
    return zoo.get("digits")


def test_health_readiness_schema_and_model_listing(digits):
    assert digits.get("/healthz").json() == {"status": "ok"}
    assert digits.get("/readyz").json() == {"status": "ready", "models": ["digits"], "loaded": ["digits"]}
    schema = digits.get("/openapi.json").json()
    assert {"/v1/models", "/v1/models/{name}", "/v1/models/{name}/predict", "/healthz", "/readyz",
            "/metrics"} <= set(schema["paths"])
    served = digits.get("/v1/models").json()["models"]
    assert [(m["name"], m["task"], m["labels"], m["loaded"]) for m in served] == [
        ("digits", "image-classification", 10, True)]
    every = {m["name"]: m for m in digits.get("/v1/models?all=true").json()["models"]}
    assert set(every) == set(zoo.list_models()) and every["digits"]["served"]
    info = digits.get("/v1/models/digits").json()
    assert info["name"] == "digits" and info["options"] == {"topk": 5}
    wrong = digits.get("/v1/models/digits/predict")
    assert wrong.status_code == 405 and wrong.json()["error"]["kind"] == "MethodNotAllowed"


def test_predict_answers_what_the_library_predicts_from_a_body_or_a_multipart_field(digits, library):
    png = digit_pngs(3)[2]
    want = library.predict(png, topk=3).to_dict()
    body = digits.post("/v1/models/digits/predict?topk=3", png)
    assert body.status_code == 200 and body.json()["result"] == want and body.json()["options"] == {"topk": 3}
    form = requests.post(digits.url + "/v1/models/DIGITS/predict?topk=3", files={"image": ("two.png", png)},
                         timeout=30)
    assert form.status_code == 200 and form.json()["result"] == want and form.json()["model"] == "digits"
    picture = digits.post("/v1/models/digits/predict", png, headers={"Accept": "image/png"})
    assert picture.headers["content-type"] == "image/png"
    drawn = cv2.imdecode(np.frombuffer(picture.content, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (32, 32, 3)
    assert (cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB) == library.predict(png).draw(images.decode(png))).all()
    assert digits.post("/v1/models/digits/predict?annotate=true", png).headers["content-type"] == "image/png"


@pytest.mark.parametrize(("path", "data", "content_type", "status", "kind", "says"), [
    ("/v1/models/digitz/predict", b"x", "image/png", 404, "UnknownModelError", "did you mean 'digits'"),
    ("/v1/models/digits/predict", b"<html>not an image</html>", "image/png", 422, "ZooInputError", "an HTML page"),
    ("/v1/models/digits/predict", b"", "image/png", 422, "ZooInputError", "is empty"),
    ("/v1/models/digits/predict", b"\0" * 300_001, "image/png", 413, "TooLarge", "at most 300,000"),
    ("/v1/models/digits/predict", b"{}", "application/json", 415, "UnsupportedMediaType", "Content-Type image/*"),
    ("/v1/models/digits/predict?colour=red", b"x", "image/png", 400, "UsageError", "takes topk=5"),
    ("/v1/models/%2E%2E/predict", b"x", "image/png", 404, "UnknownModelError", "unknown model '..'"),
    ("/v1/models/..%2F..%2Fetc%2Fpasswd/predict", b"x", "image/png", 404, "NotFound", "/openapi.json lists"),
])
def test_bad_requests_get_a_clear_error_and_the_server_keeps_serving(digits, library, path, data, content_type,
                                                                    status, kind, says):
    answer = digits.post(path, data, content_type)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["kind"] == kind and says in error["message"]
    png = digit_pngs(1)[0]
    assert digits.post("/v1/models/digits/predict", png).json()["result"] == library.predict(png).to_dict()


def test_a_chunked_body_past_the_limit_is_413_without_a_length_to_check(digits):
    def chunks():
        for _ in range(40):
            yield b"\0" * 10_000  # 400,000 bytes in all, over the 300,000 this server takes

    answer = requests.post(digits.url + "/v1/models/digits/predict", data=chunks(),
                           headers={"Content-Type": "image/png"}, timeout=30)
    assert answer.status_code == 413 and answer.json()["error"]["kind"] == "TooLarge"
    assert digits.get("/healthz").status_code == 200


def test_a_model_installed_but_not_served_is_404_naming_what_is_served(digits):
    others = [name for name in zoo.list_models() if name != "digits" and not zoo.get_spec(name).is_pipeline]
    if not others:
        pytest.skip("no other model installed")
    answer = digits.post(f"/v1/models/{others[0]}/predict", b"x")
    assert answer.status_code == 404 and "serves digits" in answer.json()["error"]["message"]


def test_metrics_count_requests_errors_latency_and_batches(digits):
    digits.post("/v1/models/digits/predict", digit_pngs(1)[0])
    digits.post("/v1/models/digits/predict", b"garbage")
    text = digits.get("/metrics").text
    assert 'zoo_requests_total{endpoint="/v1/models/{name}/predict",status="200"}' in text
    assert 'zoo_errors_total{kind="ZooInputError"}' in text
    assert 'zoo_predict_latency_seconds_count{model="digits"}' in text
    assert 'zoo_queue_depth{model="digits"} 0.0' in text
    assert "POST /v1/models/digits/predict 200 " in digits.log.read_text()  # one line per request


def test_200_requests_from_16_clients_equal_the_library_with_no_error_and_flat_memory(digits, library):
    pngs = digit_pngs(40)
    want = [r.to_dict() for r in library.predict(pngs, topk=2)]
    with requests.Session() as warm:
        for png in pngs[:8]:  # arenas and caches settle before the baseline
            warm.post(digits.url + "/v1/models/digits/predict?topk=2", data=png,
                      headers={"Content-Type": "image/png"}, timeout=30)
    before = digits.rss_kib()
    local = threading.local()

    def one(i: int) -> tuple[int, dict]:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        answer = session.post(digits.url + "/v1/models/digits/predict?topk=2", data=pngs[i % 40],
                              headers={"Content-Type": "image/png"}, timeout=30)
        return i, answer.json() if answer.status_code == 200 else {"status": answer.status_code}

    start = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(200)))
    assert time.monotonic() - start < 120
    wrong = [(i, body) for i, body in answers if body.get("result") != want[i % 40]]
    assert not wrong, wrong[:3]
    growth = digits.rss_kib() - before
    assert growth < 30 * 1024, f"the server grew by {growth} KiB over 200 requests"
    metrics = {line.split(" ")[0]: float(line.split(" ")[1]) for line in digits.get("/metrics").text.splitlines()
               if line.startswith("zoo_batch_size_")}
    runs, images_run = metrics['zoo_batch_size_count{model="digits"}'], metrics['zoo_batch_size_sum{model="digits"}']
    assert images_run >= 200 and runs < images_run, (runs, images_run)  # 16 clients: some runs took several


def test_the_token_guards_the_api_and_metrics_but_not_health_or_the_page(tmp_path):
    with serving(tmp_path, "digits", env={"ZOO_SERVE_TOKEN": "s3cret", "ZOO_CACHE_DIR": str(tmp_path / "c")}) as server:
        assert server.get("/v1/models").status_code == 401
        assert server.get("/metrics").status_code == 401
        assert server.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert server.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert server.get("/healthz").status_code == 200 and server.get("/").status_code == 200


def test_a_request_past_the_timeout_is_504_and_the_next_one_is_answered(tmp_path):
    with serving(tmp_path, "digits", "--timeout", "0.000001", env={"ZOO_CACHE_DIR": str(tmp_path / "c")}) as server:
        png = digit_pngs(1)[0]
        for _ in range(2):
            answer = server.post("/v1/models/digits/predict", png)
            assert answer.status_code == 504 and answer.json()["error"]["kind"] == "Timeout"
        assert server.get("/healthz").status_code == 200


def test_sigterm_finishes_the_request_in_flight(tmp_path, library):
    png = digit_pngs(1)[0]
    with serving(tmp_path, "digits", env={"ZOO_CACHE_DIR": str(tmp_path / "c")}) as server:
        host, port = server.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.putrequest("POST", "/v1/models/digits/predict")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", str(len(png)))
        half = len(png) // 2
        assert 0 < half < len(png)
        connection.endheaders(png[:half])  # the request is in flight: headers and half the body are in
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while "Shutting down" not in server.log.read_text():
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.02)
        connection.send(png[half:])  # the rest of the body, after the server began to stop
        answer = connection.getresponse()
        assert answer.status == 200
        assert json.loads(answer.read())["result"] == library.predict(png).to_dict()
    log = server.log.read_text()
    assert log.index("Shutting down") < log.index("POST /v1/models/digits/predict 200"), log


def test_the_page_and_its_files_are_served_with_nothing_from_elsewhere(digits):
    page = digits.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/page.js", "/static/page.css"):
        assert digits.get(asset).status_code == 200
    text = page.text + digits.get("/static/page.js").text + digits.get("/static/page.css").text
    assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_the_cli_refuses_unknown_names_and_no_names_before_binding():
    from conftest import run_zoo

    unknown = run_zoo("serve", "digitz")
    assert unknown.returncode != 0 and "did you mean 'digits'" in unknown.stderr
    none = run_zoo("serve")
    assert none.returncode == 2 and "--on-demand" in none.stderr
    assert "Authorization: Bearer" in run_zoo("serve", "--help").stdout


def test_a_full_queue_refuses_at_once_and_a_request_given_up_leaves_the_worker_serving(library):
    from zoo.serve.app import error_response
    from zoo.serve.batcher import Batcher, Busy

    gate = threading.Event()

    class Held:  # the real model, held inside its run until the test lets it go
        spec, options = library.spec, library.options

        def predict(self, images, **options):
            gate.wait(10)
            return library.predict(images, **options)

    async def admitted(batcher: Batcher, image: np.ndarray) -> object:
        with batcher.admit():
            return await batcher.predict(image, {})

    async def scenario() -> None:
        batcher = Batcher(Held(), max_batch_size=1, max_queue=3)
        image = images.decode(digit_pngs(1)[0])
        running = asyncio.ensure_future(admitted(batcher, image))
        await asyncio.sleep(0.05)  # the worker took it and is held
        waiting = asyncio.ensure_future(admitted(batcher, image))
        given_up = asyncio.ensure_future(asyncio.wait_for(admitted(batcher, image), 0.05))
        await asyncio.sleep(0.01)
        assert batcher.admitted == 3
        with pytest.raises(Busy):  # the fourth: refused at once
            await admitted(batcher, image)
        with pytest.raises(TimeoutError):
            await given_up
        assert batcher.admitted == 2  # the one given up freed its place
        late = asyncio.ensure_future(admitted(batcher, image))
        await asyncio.sleep(0.01)
        gate.set()
        results = await asyncio.gather(running, waiting, late)
        assert [r.to_dict() for r in results] == [library.predict(image).to_dict()] * 3
        assert (await admitted(batcher, image)).to_dict() == library.predict(image).to_dict()  # the worker lives on
        assert batcher.admitted == 0
        await batcher.close()
        with pytest.raises(Busy, match="stopping"):
            await admitted(batcher, image)

    asyncio.run(scenario())
    answer = error_response(Busy("model 'digits' has 2 requests already"))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"


def test_one_bad_request_in_a_batch_fails_alone(library):
    from zoo.serve.batcher import Batcher

    async def scenario() -> None:
        batcher = Batcher(library, max_batch_size=4, max_wait_ms=50)
        good = images.decode(digit_pngs(1)[0])
        bad = np.zeros((5, 5, 7), np.uint8)  # seven channels: Model.predict refuses it
        answers = await asyncio.gather(batcher.predict(good, {}), batcher.predict(bad, {}),
                                       batcher.predict(good, {}), return_exceptions=True)
        assert [type(a).__name__ for a in answers] == ["Classification", "ZooInputError", "Classification"]
        await batcher.close()

    asyncio.run(scenario())


def test_batching_groups_concurrent_requests_up_to_the_batch_size(library):
    from zoo.serve.batcher import Batcher

    sizes: list[int] = []

    async def scenario() -> None:
        batcher = Batcher(library, max_batch_size=4, max_wait_ms=50, on_batch=lambda n, _: sizes.append(n))
        decoded = [images.decode(png) for png in digit_pngs(10)]
        results = await asyncio.gather(*(batcher.predict(image, {"topk": 1}) for image in decoded))
        assert [r.to_dict() for r in results] == [r.to_dict() for r in library.predict(decoded, topk=1)]
        other = await batcher.predict(decoded[0], {"topk": 3})  # other options: a run of their own
        assert len(other.topk) == 3
        await batcher.close()

    asyncio.run(scenario())
    assert sizes == [4, 4, 2, 1]



def chromium() -> str:
    """Debian's chromium (installed by .ci/run), or skip."""
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on this machine (apt-get install -y chromium)")
    return path


def test_the_page_in_a_real_browser_shows_the_apis_top_label_and_saves_the_readmes_screenshot(digits, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    png = digit_pngs(8)[7]
    photo = tmp_path / "seven.png"
    photo.write_bytes(png)
    label = digits.post("/v1/models/digits/predict", png).json()["result"]["label"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 900, "height": 640})
            outside = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(digits.url) else None)
            page.goto(digits.url + "/")
            page.wait_for_selector("#model option[value=digits]", state="attached")
            page.set_input_files("#image", str(photo))
            page.keyboard.press("Tab")  # from the file input to the button, by keyboard
            page.focus("#run")
            page.keyboard.press("Enter")
            page.wait_for_selector("#bars li")
            shown = page.text_content("#bars li .label")
            status = page.text_content("#status")
            screenshot = page.screenshot(full_page=True)
        finally:
            browser.close()
    assert shown == label and status.startswith(label) and " ms" in status
    assert outside == [], outside  # nothing fetched from elsewhere
    assert screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ZOO_UPDATE_PICTURES"):  # the README's picture of the page
        (Path(__file__).resolve().parents[1] / "docs" / "pictures" / "serve.png").write_bytes(screenshot)
