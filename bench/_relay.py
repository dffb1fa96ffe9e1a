"""The raw relay for bench_datapath.py: PULL -> PUSH of whole messages, zero-copy, nothing else.

It stands where the runner stands (connects to the feeder, binds the sink's address) with the
same high-water marks, so the pair (raw relay, runner) differs only in what the runner does
per message. A blocking send is the relay's backpressure; it never looks at a frame.

    python bench/_relay.py DATA_URL OUTPUT_URL HWM
"""

from __future__ import annotations

import sys

import zmq


def main() -> None:
    data_url, output_url, hwm = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = zmq.Context()
    out = ctx.socket(zmq.PUSH)
    out.setsockopt(zmq.LINGER, 0)
    out.setsockopt(zmq.SNDHWM, hwm)
    out.bind(output_url)
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.setsockopt(zmq.RCVHWM, hwm)
    pull.connect(data_url)
    recv, send = pull.recv_multipart, out.send_multipart
    while True:  # ends with SIGTERM/SIGKILL from the benchmark
        send(recv(copy=False), copy=False)


if __name__ == "__main__":
    main()
