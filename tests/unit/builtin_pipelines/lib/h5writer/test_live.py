"""The live viewer port: MAX IV streaming-receiver's messages, received by a PULL socket."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator

import bitshuffle
import h5py
import numpy as np
import pytest
import zmq

from builtin_pipelines.lib.h5writer import SwissFelFile
from builtin_pipelines.lib.h5writer.live import LivePort
from tests.support import free_port, wait_for

from .h5support import image


@pytest.fixture
def viewer() -> Iterator[tuple[zmq.Socket, int]]:
    """A PULL socket, the way streaming-receiver's README reads its secondary port."""
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.linger = 0
    port = free_port()
    yield pull, port
    pull.close(linger=0)
    context.term()


def receive(pull: zmq.Socket, count: int) -> list[list[zmq.Frame]]:
    messages = []
    for _ in range(count):
        assert pull.poll(10_000), f"got {len(messages)} of {count} messages"
        messages.append(pull.recv_multipart(copy=False))
    return messages


def decode(parts: list[zmq.Frame]) -> tuple[dict, np.ndarray | None]:
    """What a streaming-receiver client does with a message; bslz4 blobs keep their header."""
    header = json.loads(parts[0].bytes)
    if header["htype"] != "image":
        assert len(parts) == 1
        return header, None
    blob = parts[1].bytes
    dtype = np.dtype(header["type"])
    if header["compression"] == "bslz4":
        size, block_bytes = struct.unpack(">QI", blob[:12])
        assert size == int(np.prod(header["shape"])) * dtype.itemsize
        stream = np.frombuffer(blob, np.uint8, offset=12)
        array = bitshuffle.decompress_lz4(
            stream, tuple(header["shape"]), dtype, block_bytes // dtype.itemsize
        )
    else:
        array = np.frombuffer(blob, dtype).reshape(header["shape"])
    return header, array


def connected(port: LivePort, pull: zmq.Socket, address: str) -> None:
    """Connect the viewer and wait until the port can send (no fixed sleep)."""
    pull.connect(address)
    wait_for(lambda: port._socket.poll(0, zmq.POLLOUT), what="the viewer's connection")


@pytest.mark.parametrize("compression", ["bitshuffle_lz4", "none"])
def test_a_viewer_gets_header_images_and_series_end(tmp_path, viewer, compression):
    """header with the file name, each image with its blob, series_end; msg_number counts up."""
    pull, number = viewer
    port = LivePort(number)
    connected(port, pull, f"tcp://127.0.0.1:{number}")
    path = tmp_path / "live.h5"
    port.header(str(path))
    with SwissFelFile(path, compression=compression, on_frame=port.frame) as f:
        for pulse_id in range(3):
            f.write(500 + pulse_id, {"image": image(pulse_id), "x": 1.0})
    port.series_end()
    messages = [decode(m) for m in receive(pull, 5)]
    port.close()
    headers = [h for h, _ in messages]
    assert headers[0] == {"htype": "header", "msg_number": 0, "filename": str(path)}
    assert headers[-1] == {"htype": "series_end", "msg_number": 4}
    for frame, (header, array) in enumerate(messages[1:4]):
        assert header == {
            "htype": "image",
            "msg_number": frame + 1,
            "frame": frame,
            "shape": [24, 32],
            "type": "uint16",
            "compression": "bslz4" if compression == "bitshuffle_lz4" else "none",
            "pulse_id": 500 + frame,
        }
        np.testing.assert_array_equal(array, image(frame))
    assert (port.sent, port.dropped) == (5, 0)


def test_the_blob_is_the_chunk_the_file_stores(tmp_path, viewer):
    """No second compression: the bslz4 blob is byte for byte the file's chunk."""
    pull, number = viewer
    port = LivePort(number)
    connected(port, pull, f"tcp://127.0.0.1:{number}")
    path = tmp_path / "same.h5"
    with SwissFelFile(path, on_frame=port.frame) as f:
        f.write(1, {"image": image(1)})
        f.flush()
        (parts,) = receive(pull, 1)
    port.close()
    with h5py.File(path, "r") as h:
        _, chunk = h["data/image/data"].id.read_direct_chunk((0, 0, 0))
    assert parts[1].bytes == chunk


def test_every_nth_image_of_the_chosen_channel_is_sent(tmp_path, viewer):
    """live_every picks one frame in N; other image channels are not sent."""
    pull, number = viewer
    port = LivePort(number, every=3, channel="cam2")
    connected(port, pull, f"tcp://127.0.0.1:{number}")
    with SwissFelFile(tmp_path / "every.h5", on_frame=port.frame) as f:
        for pulse_id in range(7):
            f.write(pulse_id, {"cam1": image(pulse_id), "cam2": image(pulse_id + 100)})
    messages = [decode(m) for m in receive(pull, 3)]
    assert not pull.poll(200)  # and no more
    port.close()
    assert [h["frame"] for h, _ in messages] == [0, 3, 6]
    for header, array in messages:
        np.testing.assert_array_equal(array, image(header["frame"] + 100))


def test_sending_never_waits_and_counts_what_no_viewer_took(tmp_path):
    """With no viewer connected (or a full queue) messages are dropped and counted."""
    port = LivePort(free_port(), queue=1)
    port.header("x.h5")
    with SwissFelFile(tmp_path / "nobody.h5", on_frame=port.frame) as f:
        for pulse_id in range(5):
            f.write(pulse_id, {"image": image(pulse_id)})
    port.series_end()
    port.close()
    assert (port.sent, port.dropped) == (0, 7)


def test_a_port_in_use_is_an_error():
    """Binding a taken port raises ZMQError and leaves nothing open."""
    number = free_port()
    first = LivePort(number)
    try:
        with pytest.raises(zmq.ZMQError):
            LivePort(number)
    finally:
        first.close()
