"""A fake supervisor for the Python runner: real sockets on loopback, a real child process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from supervisor.contract import (
    ConfigUpdate,
    ContractEnv,
    LogRecord,
    SocketMode,
    Status,
    dump_message,
    parse_log_record,
    parse_program_message,
)
from supervisor.contract.bsread import Decoder, Encoder, Message

REPO = Path(__file__).resolve().parents[4]
DEADLINE = 10.0  # seconds any single wait may take before the test fails


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeSupervisor:
    """Plays the supervisor's side of the contract for one runner process."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.context = zmq.Context()
        self.router = self._bind(zmq.ROUTER)
        self.log_pull = self._bind(zmq.PULL)
        self.data: zmq.Socket | None = None
        self.output: zmq.Socket | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.identity: bytes | None = None
        self.messages: list[Any] = []  # every CONFIG message received, in order
        self.logs: list[LogRecord] = []
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.env: ContractEnv | None = None

    def _bind(self, kind: int) -> zmq.Socket:
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind("tcp://127.0.0.1:*")
        return sock

    @staticmethod
    def _url(sock: zmq.Socket) -> str:
        return sock.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- starting and stopping ------------------------------------------------------------

    def start(
        self,
        source: str | None = None,
        *,
        config: dict[str, Any] | None = None,
        module: str | None = None,
        builtin: str | None = None,
        script: Path | None = None,
        data: bool = True,
        output_mode: SocketMode = SocketMode.PUSH,
        status_interval: float = 0.2,
    ) -> None:
        """Launch the runner on ``source`` (a script's text), a module, a builtin or a script."""
        if source is not None:
            script = self.tmp_path / "user_pipeline.py"
            script.write_text(textwrap.dedent(source))
        if data:
            self.data = self._bind(zmq.PUSH)
            self.data.setsockopt(zmq.SNDTIMEO, int(DEADLINE * 1000))
        self.env = ContractEnv(
            instance="test-instance",
            run=7,
            config=config or {},
            data_url=self._url(self.data) if self.data is not None else None,
            data_mode=SocketMode.PULL,
            output_url=f"tcp://127.0.0.1:{free_port()}",
            output_mode=output_mode,
            config_url=self._url(self.router),
            log_url=self._url(self.log_pull),
            status_interval=status_interval,
        )
        if builtin is not None:
            target = ["--builtin", builtin]
        else:
            target = ["--module", module] if module else ["--script", str(script)]
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "runners.python", *target],
            env={**os.environ, **self.env.to_environ()},
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def handshake(self, config: dict[str, Any] | None = None, seq: int = 0) -> None:
        """Answer the hello with ``config`` (default: the env's) and wait for ack and ready."""
        self.expect("hello")
        self.send_config(self.env.config if config is None else config, seq)
        ack = self.expect("config_ack", "config_error")
        assert ack.kind == "config_ack", ack
        self.expect("ready")

    def stop(self) -> None:
        """Kill the child if it still runs, and close every socket."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.communicate(timeout=DEADLINE)
        for sock in (self.router, self.log_pull, self.data, self.output):
            if sock is not None:
                sock.close(linger=0)
        self.context.term()

    def wait_exit(self) -> tuple[int, str]:
        """Wait for the child to exit; returns its exit code and stderr."""
        _, stderr = self.process.communicate(timeout=DEADLINE)
        return self.process.returncode, stderr.decode(errors="replace")

    # -- CONFIG and LOG ---------------------------------------------------------------------

    def send_config(self, config: dict[str, Any], seq: int) -> None:
        """Send a ``config`` message to the runner."""
        assert self.identity is not None, "no hello received yet"
        frame = dump_message(ConfigUpdate(seq=seq, config=config))
        self.router.send_multipart([self.identity, frame])

    def expect(self, *kinds: str, where: Callable[[Any], bool] | None = None) -> Any:
        """Wait for the next CONFIG message of one of ``kinds`` (skipping others)."""
        deadline = time.monotonic() + DEADLINE
        seen: list[str] = []
        while time.monotonic() < deadline:
            self.drain_logs()
            if self.router.poll(50):
                self.identity, frame = self.router.recv_multipart()
                message = parse_program_message(frame)
                self.messages.append(message)
                seen.append(message.kind)
                if message.kind in kinds and (where is None or where(message)):
                    return message
            elif self.process is not None and self.process.poll() is not None:
                break
        pytest.fail(self._failure(f"no {'/'.join(kinds)} message; CONFIG saw {seen[-10:]}"))

    def status_where(self, condition: Callable[[Status], bool]) -> Status:
        """Wait for a ``status`` message that meets ``condition``."""
        return self.expect("status", where=condition)

    def drain_logs(self) -> list[LogRecord]:
        """Collect the log records that arrived so far."""
        while self.log_pull.poll(0):
            self.logs.append(parse_log_record(self.log_pull.recv()))
        return self.logs

    def expect_log(self, condition: Callable[[LogRecord], bool]) -> LogRecord:
        """Wait for a log record meeting ``condition``."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            for record in self.drain_logs():
                if condition(record):
                    return record
            self.log_pull.poll(50)
        pytest.fail(self._failure(f"no such log record; got {[r.message for r in self.logs]}"))

    def _failure(self, what: str) -> str:
        code = self.process.poll() if self.process is not None else None
        stderr = ""
        if code is not None:
            stderr = self.process.stderr.read().decode(errors="replace")[-2000:]
        return f"{what}; exit code {code}; stderr: {stderr}"

    # -- DATA and OUTPUT --------------------------------------------------------------------

    def send(
        self, data: dict[str, Any], pulse_id: int, timestamp: Any = (1_700_000_000, 5)
    ) -> None:
        """Send one bsread message on DATA."""
        self.data.send_multipart(self.encoder.encode(data, pulse_id, timestamp), copy=False)

    def connect_output(self) -> zmq.Socket:
        """Connect a PULL (or SUB) to the runner's output."""
        kind = zmq.SUB if self.env.output_mode == SocketMode.PUB else zmq.PULL
        self.output = self.context.socket(kind)
        self.output.setsockopt(zmq.LINGER, 0)
        if kind == zmq.SUB:
            self.output.setsockopt(zmq.SUBSCRIBE, b"")
        self.output.connect(self.env.output_url)
        return self.output

    def receive(self, timeout: float = DEADLINE) -> Message:
        """The next decoded output message."""
        if not self.output.poll(int(timeout * 1000)):
            pytest.fail(self._failure("no output message"))
        message = self.decoder.decode(self.output.recv_multipart(copy=False))
        assert message is not None
        return message

    def prime(self, data: dict[str, Any]) -> int:
        """Send ``data`` every 50 ms until output flows; returns how many messages it took."""
        deadline = time.monotonic() + DEADLINE
        sent = 0
        while time.monotonic() < deadline:
            self.send(data, pulse_id=sent)
            sent += 1
            if self.output.poll(50):
                self.receive()
                while self.output.poll(100):  # a late answer to an earlier prime
                    self.receive()
                return sent
        pytest.fail(self._failure("the output never started flowing"))


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[FakeSupervisor]:
    """A fake supervisor; the runner it starts is always killed and reaped afterwards."""
    fake = FakeSupervisor(tmp_path)
    try:
        yield fake
    finally:
        fake.stop()
