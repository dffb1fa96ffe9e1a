"""C extensions for real: a ``.c`` in the registry, compiled by the runner, fed by a bsread sender.

A sender thread publishes seeded uint16 images on loopback; the extension instances read it as
an external stream. Each extension's output is checked against numpy on the same images.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import zmq

from supervisor.contract.bsread import Decoder, Encoder, Message
from tests.support import SupervisorProcess, wait_for

pytestmark = pytest.mark.system

H, W = 48, 64
DEADLINE = 30.0

# Both projections after a threshold, in one pass; pv_configure refuses a bad threshold.
PROJECTIONS = r"""
#include <stdint.h>
#include <stdio.h>

/* threshold: pixels below it count as 0. */
static int threshold(const pv_ext *ext, double *value)
{
    *value = 0;
    int found = ext->number(ext, "threshold", value);
    if (found < 0 || *value < 0 || *value > 65535) {
        const char *text = ext->string(ext, "threshold");
        char message[160];
        snprintf(message, sizeof message, "threshold must be a number from 0 to 65535, got %s",
                 text ? text : "another type");
        ext->error(ext, message);
        return -1;
    }
    return 0;
}

int pv_configure(const pv_ext *ext)
{
    double t;
    return threshold(ext, &t) < 0 ? PV_ERROR : PV_SEND;
}

int pv_process_image(const pv_image *image, const pv_ext *ext)
{
    double t;
    if (threshold(ext, &t) < 0)
        return PV_ERROR;
    if (image->dtype != PV_UINT16) {
        ext->error(ext, "uint16 images only");
        return PV_ERROR;
    }
    int64_t w = image->width, h = image->height;
    int64_t *x = ext->array(ext, "x_profile", PV_INT64, 1, &w);
    int64_t *y = ext->array(ext, "y_profile", PV_INT64, 1, &h);
    if (!x || !y)
        return PV_ERROR;
    uint16_t low = (uint16_t)t;
    int64_t total = 0;
    for (int64_t r = 0; r < h; r++) {
        const uint16_t *row = (const uint16_t *)((const char *)image->data + r * image->row_stride);
        int64_t sum = 0;
        for (int64_t c = 0; c < w; c++) {
            uint16_t v = row[c] >= low ? row[c] : 0;
            x[c] += v;
            sum += v;
        }
        y[r] = sum;
        total += sum;
    }
    ext->scalar(ext, "intensity", PV_INT64, &total);
    return PV_SEND;
}
"""

# A segfault at every pulse id divisible by crash_every.
CRASHER = r"""
int pv_process_image(const pv_image *image, const pv_ext *ext)
{
    double every = 0;
    ext->number(ext, "crash_every", &every);
    if (every > 0 && ext->pulse_id % (uint64_t)every == 0) {
        volatile int *nowhere = 0;
        *nowhere = 1;
    }
    uint64_t pulse = ext->pulse_id;
    ext->scalar(ext, "pulse", PV_UINT64, &pulse);
    return PV_SEND;
}
"""

BROKEN = """
int pv_process_image(const pv_image *image, const pv_ext *ext)
{
    return undeclared_variable;
}
"""


def image(pulse_id: int) -> np.ndarray:
    return np.random.default_rng(pulse_id).integers(0, 400, (H, W), dtype=np.uint16)


def projections(pulse_id: int, threshold: int) -> tuple[np.ndarray, np.ndarray]:
    kept = np.where(image(pulse_id) >= threshold, image(pulse_id), 0)
    return kept.sum(axis=0, dtype=np.int64), kept.sum(axis=1, dtype=np.int64)


@dataclass
class Sender:
    """A bsread PUB on loopback sending ``image(pulse_id)`` every 5 ms from pulse id 1."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def sender() -> Iterator[Sender]:
    context = zmq.Context()
    sock = context.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    running = Sender(f"tcp://127.0.0.1:{port}")

    def send() -> None:
        encoder = Encoder()
        pulse_id = 1
        while not running.stop.wait(0.005):
            sock.send_multipart(encoder.encode({"image": image(pulse_id)}, pulse_id, (1, 0)))
            pulse_id += 1

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    yield running
    running.stop.set()
    thread.join(timeout=5)
    sock.close()
    context.term()


@pytest.fixture
def node(
    registry: Path, tmp_path: Path, start_supervisor, monkeypatch: pytest.MonkeyPatch
) -> SupervisorProcess:
    """A supervisor whose runners compile into this test's own cache."""
    monkeypatch.setenv("PIPEVISOR_CACHE_DIR", str(tmp_path / "cache"))  # passed on to programs
    (registry / "proj.c").write_text(PROJECTIONS)
    (registry / "crasher.c").write_text(CRASHER)
    (registry / "broken.c").write_text(BROKEN)
    return start_supervisor()


def create(node: SupervisorProcess, name: str, entry: str, url: str, **extra) -> dict:
    body = {"name": name, "entry": entry, "input": {"url": url, "mode": "SUB"}, **extra}
    response = node.api("POST", "/instances", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def receive(url: str, count: int, where=lambda message: True) -> list[Message]:
    """``count`` decoded messages of ``url`` meeting ``where``, within the deadline."""
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(url)
    decoder = Decoder()
    got: list[Message] = []
    try:

        def more() -> bool:
            while len(got) < count and sock.poll(50):
                message = decoder.decode(sock.recv_multipart())
                if message is not None and where(message):
                    got.append(message)
            return len(got) >= count

        wait_for(more, timeout=DEADLINE, what=f"{count} messages from {url}")
    finally:
        sock.close()
        context.term()
    return got[:count]


def log_text(node: SupervisorProcess, name: str) -> str:
    entries = node.api("GET", f"/instances/{name}/logs", params={"n": 500}).json()
    return "\n".join(entry["message"] for entry in entries)


def test_the_extension_computes_numpy_s_projections_exactly(
    node: SupervisorProcess, sender: Sender
) -> None:
    """proj.c's profiles equal numpy's on the same images, before and after a live change."""
    info = create(node, "proj", "proj", sender.url, config={"threshold": 100})
    node.wait_state("proj", "running", timeout=DEADLINE)
    for message in receive(info["stream"], 5):
        x, y = projections(message.pulse_id, 100)
        assert list(message.data) == ["x_profile", "y_profile", "intensity"]
        np.testing.assert_array_equal(message.data["x_profile"], x)
        np.testing.assert_array_equal(message.data["y_profile"], y)
        assert message.data["x_profile"].dtype == np.int64
        assert message.data["intensity"] == x.sum()

    response = node.api("PATCH", "/instances/proj/config", json={"threshold": 300})
    assert response.status_code == 200, response.text

    def under_300(message: Message) -> bool:
        return message.data["intensity"] == projections(message.pulse_id, 300)[0].sum()

    for message in receive(info["stream"], 3, where=under_300):
        x, y = projections(message.pulse_id, 300)
        np.testing.assert_array_equal(message.data["x_profile"], x)
        np.testing.assert_array_equal(message.data["y_profile"], y)
    assert "proj.c: compiling" in log_text(node, "proj")


def test_pv_configure_refuses_a_bad_value_with_its_message(
    node: SupervisorProcess, sender: Sender
) -> None:
    """A live change the extension refuses is a 422 quoting its words; the old config stays."""
    create(node, "proj", "proj", sender.url, config={"threshold": 10})
    node.wait_state("proj", "running", timeout=DEADLINE)
    response = node.api("PATCH", "/instances/proj/config", json={"threshold": "high"})
    assert response.status_code == 422
    assert "threshold must be a number from 0 to 65535, got high" in response.text
    assert node.instance("proj")["config"]["threshold"] == 10


def test_a_restart_loads_the_cached_build(
    node: SupervisorProcess, sender: Sender, tmp_path: Path
) -> None:
    """The second run finds the compiled module by its hash and does not compile again, in the
    cache folder the supervisor was started with (PIPEVISOR_CACHE_DIR reaches its programs)."""
    create(node, "proj", "proj", sender.url)
    wait_for(lambda: node.instance("proj")["ready"], timeout=DEADLINE, what="proj ready")
    assert node.api("POST", "/instances/proj/restart").status_code < 300
    wait_for(
        lambda: "compiled module from the cache" in log_text(node, "proj"),
        timeout=DEADLINE,
        what="a start from the cache",
    )
    assert log_text(node, "proj").count("proj.c: compiling") == 1
    [build] = (tmp_path / "cache" / "extensions").iterdir()
    assert build.name.startswith("proj-")


def test_a_compile_error_fails_the_instance_with_the_compiler_s_words(
    node: SupervisorProcess, sender: Sender
) -> None:
    """broken.c: the reason and the log quote gcc's error with the file and line."""
    create(node, "broken", "broken", sender.url, restart={"mode": "never"})
    info = node.wait_state("broken", "failed", timeout=DEADLINE)
    assert info["exit_code"] == 4
    reason = wait_for(
        lambda: (
            "undeclared_variable" in node.instance("broken")["reason"]
            and node.instance("broken")["reason"]
        ),
        timeout=DEADLINE,
        what="the compiler's message in the reason",
    )
    assert "broken.c:4:" in reason
    assert "cannot compile broken.c" in reason
    assert "undeclared_variable" in log_text(node, "broken")


def test_a_segfault_takes_down_only_its_instance_which_is_restarted(
    node: SupervisorProcess, sender: Sender
) -> None:
    """crasher.c segfaults every 200 pulses: its instance restarts, proj runs on untouched."""
    proj = create(node, "proj", "proj", sender.url)
    node.wait_state("proj", "running", timeout=DEADLINE)
    pid = node.instance("proj")["pid"]
    crasher = create(node, "crasher", "crasher", sender.url, config={"crash_every": 200})
    wait_for(
        lambda: node.instance("crasher")["exit_signal"] == "SIGSEGV",
        timeout=DEADLINE,
        what="the crasher's segfault",
    )
    # restarted, and processing again
    receive(crasher["stream"], 2)
    info = node.instance("crasher")
    assert info["restarts"] >= 1
    logs = log_text(node, "crasher")
    assert "killed by SIGSEGV" in logs
    assert "Segmentation fault" in logs  # the runner's faulthandler, from stderr
    assert node.instance("proj")["pid"] == pid
    assert node.instance("proj")["restarts"] == 0
    receive(proj["stream"], 2)
