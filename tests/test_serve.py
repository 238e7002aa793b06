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
from typing import Self

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
    ("/v1/models/digits/predict?topk=2.5", b"x", "image/png", 400, "UsageError", "option 'topk' must be a whole"),
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


# -- issue 28: hostile clients -------------------------------------------------------------------


def stalled(url: str, count: int) -> list[socket.socket]:
    """``count`` connections that each send a predict's headers (a 1,000-byte body announced) and 10 bytes of the
    body, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=30)
        sock.sendall(b"POST /v1/models/digits/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b"\x89PNG\r\n\x1a\n\0\0")
        sockets.append(sock)
    return sockets


def status_line(sock: socket.socket) -> tuple[int, str]:
    """The status and the body of the answer on ``sock`` (read until the server closes it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode(errors="replace")


def test_28_01_stalled_bodies_hold_no_model_slot_and_are_408_after_the_body_timeout(tmp_path, library):
    png = digit_pngs(1)[0]
    want = library.predict(png).to_dict()
    with serving(tmp_path, "digits", "--max-queue", "4", "--body-timeout", "3", "--max-receiving", "8",
                 env={"ZOO_CACHE_DIR": str(tmp_path / "c")}) as server:
        start = time.monotonic()
        slow = stalled(server.url, 6)  # more than --max-queue: before issue 28 they held every slot of the model
        time.sleep(0.3)
        answer = server.post("/v1/models/digits/predict", png)
        assert answer.status_code == 200 and answer.json()["result"] == want, answer.text
        assert time.monotonic() - start < 2.5  # at once: not after the stalled bodies ran out of time
        slow += stalled(server.url, 2)  # now --max-receiving bodies are being received
        time.sleep(0.3)
        busy = server.post("/v1/models/digits/predict", png)
        assert busy.status_code == 503 and "--max-receiving" in busy.json()["error"]["message"], busy.text
        while (answer := server.post("/v1/models/digits/predict", png)).status_code != 200:  # retried as told
            assert answer.status_code == 503 and time.monotonic() - start < 3 + 0.3 + 3 + 3, answer.text
            time.sleep(0.1)
        assert answer.json()["result"] == want
        for sock in slow:  # each stalled body: 408 once its time ran out, and the connection closed
            status, body = status_line(sock)
            assert status == 408 and '"BodyTimeout"' in body and "--body-timeout" in body, body
        assert time.monotonic() - start < 3 + 0.3 + 3 + 3
        text = server.get("/metrics").text
        assert 'zoo_errors_total{kind="BodyTimeout"} 8.0' in text
        assert 'zoo_queue_depth{model="digits"} 0.0' in text


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A PNG of 10,000 x 10,000 pixels of one grey (about 120 KB): 100 megapixels, 300 MB once decoded to RGB."""
    return cv2.imencode(".png", np.full((10_000, 10_000), 255, np.uint8))[1].tobytes()


class PeakRss:
    """Samples a process's VmRSS every 10 ms while in the block; kills it past ``kill_mib`` (to keep a server without
    a pixel budget from taking the machine)."""

    def __init__(self, server: Server, kill_mib: int) -> None:
        self.server, self.kill_mib, self.peak_mib, self.killed = server, kill_mib, 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mib = max(self.peak_mib, self.server.rss_kib() // 1024)
            if self.peak_mib > self.kill_mib:
                self.killed = True
                self.server.process.kill()
                return
            time.sleep(0.01)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_28_02_a_burst_of_100_megapixel_images_stays_under_the_pixel_budget_and_memory_returns(tmp_path, library,
                                                                                               huge_png):
    from zoo.serve import Settings
    from zoo.serve.admission import PEAK_BYTES_PER_PIXEL

    png = digit_pngs(1)[0]
    want = library.predict(png).to_dict()
    with serving(tmp_path, "digits", "--timeout", "15", env={"ZOO_CACHE_DIR": str(tmp_path / "c")}) as server:
        for _ in range(3):
            server.post("/v1/models/digits/predict", png)
        before = server.rss_kib() // 1024
        bound = before + PEAK_BYTES_PER_PIXEL * Settings().max_pixels_in_flight // 2 ** 20  # the README's

        def one(i: int) -> tuple[int, str]:
            path = "/v1/models/digits/predict" + ("?annotate=true" if i % 4 == 0 else "")
            try:
                answer = requests.post(server.url + path, data=huge_png, headers={"Content-Type": "image/png"},
                                       timeout=120)
            except requests.ConnectionError as error:  # the server was killed past twice the bound
                return 0, str(error)
            return answer.status_code, answer.text[:300] if answer.status_code != 200 else ""

        start = time.monotonic()
        with PeakRss(server, 2 * bound) as rss, ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(one, range(16)))
        assert not rss.killed, f"the server passed {2 * bound} MiB and was killed: {answers}"
        assert time.monotonic() - start < 90
        assert all(status == 200 or (status == 503 and "--max-pixels-in-flight" in text)
                   for status, text in answers), answers
        assert sum(status == 200 for status, _ in answers) >= 2, answers  # some were answered, in turn
        peak = int(next(line.split()[1] for line in Path(f"/proc/{server.process.pid}/status").read_text()
                        .splitlines() if line.startswith("VmHWM:"))) // 1024
        assert peak < bound, f"peak RSS {peak} MiB (sampled {rss.peak_mib}), from {before} MiB; bound {bound} MiB"
        time.sleep(1)
        after = server.rss_kib() // 1024
        assert after < before + 100, f"{after} MiB after the burst, {before} MiB before"  # memory returned
        answer = server.post("/v1/models/digits/predict", png)
        assert answer.status_code == 200 and answer.json()["result"] == want


def test_28_02_the_pixel_budget_admits_in_turn_refuses_after_its_wait_and_leaks_nothing():
    from zoo.serve.admission import Busy, PixelBudget

    async def held(budget: PixelBudget, pixels: int, gate: asyncio.Event, order: list[int]) -> None:
        async with budget.hold(pixels):
            order.append(pixels)
            await gate.wait()

    async def in_turn() -> None:
        budget, order, gates = PixelBudget(100, wait=5), [], [asyncio.Event() for _ in range(3)]
        tasks = []
        for pixels, gate in zip((60, 50, 30), gates):  # 50 does not fit beside 60; 30 would, but waits its turn
            tasks.append(asyncio.ensure_future(held(budget, pixels, gate, order)))
            await asyncio.sleep(0.01)
        assert order == [60] and budget.in_flight == 60
        gates[0].set()
        await tasks[0]
        await asyncio.sleep(0.01)
        assert order == [60, 50, 30] and budget.in_flight == 80
        for gate in gates:
            gate.set()
        await asyncio.gather(*tasks)
        assert budget.in_flight == 0

    async def refused_after_the_wait() -> None:
        budget, order, gate = PixelBudget(100, wait=0.1), [], asyncio.Event()
        holder = asyncio.ensure_future(held(budget, 60, gate, order))
        await asyncio.sleep(0.01)
        start = time.monotonic()
        with pytest.raises(Busy, match="--max-pixels-in-flight"):
            await held(budget, 60, gate, order)
        assert 0.1 <= time.monotonic() - start < 1 and budget.in_flight == 60 and not budget._waiting
        gate.set()
        await holder
        with pytest.raises(ValueError, match="never fit"):  # the caller answers 413 first
            await held(budget, 101, gate, order)

    async def cancelled() -> None:  # clients gone while they wait or hold leave no pixels behind
        budget, order, tasks = PixelBudget(100, wait=5), [], []
        for pixels in (50, 60, 40):
            tasks.append(asyncio.ensure_future(held(budget, pixels, asyncio.Event(), order)))
            await asyncio.sleep(0.01)
        assert order == [50]
        tasks[1].cancel()  # the first in line leaves: the one behind it fits, and goes in
        await asyncio.sleep(0.01)
        assert order == [50, 40] and budget.in_flight == 90
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert budget.in_flight == 0 and not budget._waiting

    for scenario in (in_turn, refused_after_the_wait, cancelled):
        asyncio.run(asyncio.wait_for(scenario(), 10))


def test_28_02_pixels_are_read_from_the_header_and_an_image_over_the_whole_budget_is_413(huge_png, monkeypatch):
    from zoo.errors import ZooInputError
    from zoo.serve.app import HTTPError, _pixels

    assert _pixels(huge_png, "(request body)", 100_000_000) == 100_000_000
    assert _pixels(b"<html>not an image</html>", "(request body)", 100) == 0  # decode refuses it, unread
    with pytest.raises(HTTPError) as refused:
        _pixels(huge_png, "(request body)", 50_000_000)
    assert refused.value.status == 413 and "--max-pixels-in-flight" in refused.value.message
    monkeypatch.setenv("ZOO_MAX_PIXELS", "1000000")
    with pytest.raises(ZooInputError, match="ZOO_MAX_PIXELS"):  # 422, as decode would say
        _pixels(huge_png, "(request body)", 100_000_000)


def raw_post(url: str, target: str, body: bytes) -> tuple[int, dict]:
    """POST ``target`` as it is (not percent-encoded, as a hostile client sends it), the whole request in one write;
    the status and the JSON answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {len(body)}"
                     f"\r\nConnection: close\r\n\r\n".encode() + body)
        status, text = status_line(sock)
    return status, json.loads(text)


@pytest.mark.parametrize("text", ["9" * 5000, "[" * 100_000])  # past int()'s digits; past json's recursion
def test_28_03_option_text_of_any_length_or_depth_is_400_naming_the_option_and_its_type(digits, library, text):
    png = digit_pngs(1)[0]
    status, answer = raw_post(digits.url, f"/v1/models/digits/predict?topk={text}", png)
    assert status == 400, answer
    error = answer["error"]
    assert error["kind"] == "UsageError" and "option 'topk' must be a whole number" in error["message"], error
    assert len(error["message"]) < 300  # the text is shortened in the message
    assert digits.post("/v1/models/digits/predict", png).json()["result"] == library.predict(png).to_dict()


def test_28_04_a_model_named_at_start_that_cannot_load_stops_the_server_with_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("a file where the cache's folder should be")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "zoo.cli", "serve", "digits", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ZOO_CACHE_DIR": str(tmp_path / "file" / "cache")})
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the server kept running with a model it cannot load: {err[-2000:]}")
    assert process.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("zoo: error: model 'digits'") and "--on-demand" in last, err
    assert "cannot write to the cache" in last and "point it at a writable folder" in last, err  # the cause, and what to do
    assert "Traceback" not in out + err, err


def test_28_04_a_model_loaded_on_demand_that_cannot_load_keeps_its_per_request_error(tmp_path):
    (tmp_path / "file").write_text("a file where the cache's folder should be")
    with serving(tmp_path, "--on-demand", env={"ZOO_CACHE_DIR": str(tmp_path / "file" / "cache")}) as server:
        for _ in range(2):
            answer = server.post("/v1/models/digits/predict", digit_pngs(1)[0])
            assert answer.status_code == 500 and answer.json()["error"]["kind"] == "NotWritableError", answer.text
        assert server.get("/healthz").status_code == 200


def test_28_04_with_a_token_the_favicon_is_public_and_the_pages_first_predict_after_the_token_is_sent(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    png = digit_pngs(8)[7]
    photo = tmp_path / "seven.png"
    photo.write_bytes(png)
    with serving(tmp_path, "digits", env={"ZOO_SERVE_TOKEN": "s3cret", "ZOO_CACHE_DIR": str(tmp_path / "c")}) as server:
        icon = server.get("/favicon.ico")
        assert icon.status_code in (200, 204), icon.text
        label = server.post("/v1/models/digits/predict", png, headers={"Authorization": "Bearer s3cret"}).json()
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium(), headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                sent, said = [], []
                page.on("request", lambda r: sent.append(r.url) if "/v1/" in r.url else None)
                page.on("console", lambda message: said.append(message.text))
                page.goto(server.url + "/")
                page.wait_for_selector("#token-row", state="visible")  # the model list answered 401
                page.set_input_files("#image", str(photo))
                page.fill("#token", "s3cret")
                page.click("#run")  # once: the token's change event and the click come together, as for a user
                try:
                    page.wait_for_selector("#bars li", timeout=30_000)
                except sync_api.TimeoutError:
                    pytest.fail(f"no result shown: status {page.text_content('#status')!r}, requests {sent}, "
                                f"console {said}")
                shown = page.text_content("#bars li .label")
            finally:
                browser.close()
        assert shown == label["result"]["label"] and sum("/predict" in url for url in sent) == 1, sent
