"""Reading a live stream: averaging its images (backgrounds), its latest image (previews)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import zmq

from supervisor.contract import SocketMode
from supervisor.contract.bsread import Encoder
from supervisor.nodeapi.errors import ConflictError
from supervisor.streamtap import average_images, latest_image


@pytest.fixture
def context() -> Iterator[zmq.Context]:
    """A context of the test's own."""
    ctx = zmq.Context()
    yield ctx
    ctx.term()


@pytest.fixture
def publish(context: zmq.Context) -> Iterator[Callable[[Callable[[int], dict | None]], str]]:
    """Publish ``make(i)`` for i = 0, 1, ... on a PUB socket (bytes for raw frames), in a thread."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(make: Callable[[int], dict | bytes | None]) -> str:
        socket = context.socket(zmq.PUB)
        port = socket.bind_to_random_port("tcp://127.0.0.1")

        def run() -> None:
            encoder = Encoder()
            i = 0
            while not stop.wait(0.005):
                item = make(i)
                if isinstance(item, bytes):
                    socket.send(item)
                elif item is not None:
                    socket.send_multipart(encoder.encode(item, 1000 + i, (1, 0)))
                i += 1
            socket.close(linger=0)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return f"tcp://127.0.0.1:{port}"

    yield start
    stop.set()
    for thread in threads:
        thread.join(5)


def test_integer_images_are_averaged_in_64_bits_and_truncated(context, publish) -> None:
    """Eight uint16 frames near the top of the range average without overflow, truncated."""
    base = np.full((3, 4), 65530, np.uint16)

    def frame(i: int) -> dict:
        return {"image": base + np.uint16(i % 4), "x": i}

    url = publish(frame)
    mean, first = average_images(context, url, SocketMode.SUB, 8, timeout=10)
    assert mean.dtype == np.uint16
    # Two full cycles of +0..+3 from wherever the subscription started: mean +1.5 -> +1.
    np.testing.assert_array_equal(mean, base + 1)
    assert first >= 1000


def test_float_images_keep_a_float_mean(context, publish) -> None:
    """A float camera's background is its float64 mean."""
    url = publish(lambda i: {"image": np.full((2, 2), 0.5 + (i % 2), np.float32)})
    mean, _ = average_images(context, url, SocketMode.SUB, 4, timeout=10)
    assert mean.dtype == np.float64
    np.testing.assert_allclose(mean, 1.0)


def test_messages_without_an_image_and_malformed_ones_are_skipped(context, publish) -> None:
    """Only 2-D image channels count; undecodable messages are skipped, not fatal."""

    def mixed(i: int) -> dict | bytes:
        if i % 3 == 0:
            return b"garbage"
        if i % 3 == 1:
            return {"scalar": 1.0}
        return {"image": np.full((2, 2), 7, np.uint8)}

    url = publish(mixed)
    mean, _ = average_images(context, url, SocketMode.SUB, 3, timeout=10)
    np.testing.assert_array_equal(mean, np.full((2, 2), 7, np.uint8))


def test_a_silent_stream_times_out_with_a_clear_error(context, publish) -> None:
    """No image within the timeout is a conflict that says how many arrived."""
    url = publish(lambda i: None)
    with pytest.raises(ConflictError, match=r"only 0 of 2 images arrived from tcp://.* in 0.3 s"):
        average_images(context, url, SocketMode.SUB, 2, timeout=0.3)


def test_a_shape_change_while_collecting_is_an_error(context, publish) -> None:
    """Images of two shapes cannot be averaged: the collection says so."""
    url = publish(lambda i: {"image": np.zeros((2, 2 + i % 2), np.uint16)})
    with pytest.raises(ConflictError, match="image shape changed"):
        average_images(context, url, SocketMode.SUB, 50, timeout=10)


# -- the latest image, for previews ----------------------------------------------------------


def test_the_latest_image_is_the_first_that_arrives_with_its_pulse_id(context, publish) -> None:
    """One image is returned with the pulse id of its own message."""
    url = publish(lambda i: {"image": np.full((3, 5), i, np.uint16)})
    image, pulse_id = latest_image(context, url, timeout=10)
    assert image.shape == (3, 5)
    assert pulse_id >= 1000
    np.testing.assert_array_equal(image, np.full((3, 5), pulse_id - 1000))


def test_the_latest_image_skips_malformed_messages_and_other_channels(context, publish) -> None:
    """Garbage, messages without the channel and 1-D arrays in it are passed over."""

    def mixed(i: int) -> dict | bytes:
        if i % 4 == 0:
            return b"garbage"
        if i % 4 == 1:
            return {"image": np.arange(6, dtype=np.uint16)}  # 1-D: a profile, not an image
        if i % 4 == 2:
            return {"intensity": 1.0}
        return {"image": np.full((2, 2), 9, np.uint8), "intensity": 2.0}

    url = publish(mixed)
    image, _ = latest_image(context, url, timeout=10)
    np.testing.assert_array_equal(image, np.full((2, 2), 9, np.uint8))


def test_the_latest_image_of_another_channel(context, publish) -> None:
    """``channel`` picks the array to read."""
    url = publish(lambda i: {"image": np.zeros((2, 2)), "roi": np.ones((4, 3), np.float32)})
    image, _ = latest_image(context, url, timeout=10, channel="roi")
    np.testing.assert_array_equal(image, np.ones((4, 3), np.float32))


def test_a_silent_stream_has_no_latest_image(context, publish) -> None:
    """Nothing in time: a conflict that says no message arrived."""
    url = publish(lambda i: None)
    with pytest.raises(ConflictError, match=r"no message arrived from tcp://.* in 0.3 s$"):
        latest_image(context, url, timeout=0.3)


def test_a_stream_without_the_image_says_which_channels_it_has(context, publish) -> None:
    """Messages without a 2-D image: the error names the channel asked and those seen."""

    def mixed(i: int) -> dict | bytes:
        return b"garbage" if i % 2 else {"x_profile": np.arange(4.0), "intensity": 1.0}

    url = publish(mixed)
    with pytest.raises(ConflictError) as caught:
        latest_image(context, url, timeout=0.3)
    message = caught.value.message
    assert "had a 2-D image in channel 'image'" in message
    assert "'x_profile', 'intensity'" in message
    assert "malformed messages)" in message
