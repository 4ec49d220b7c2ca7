"""Helpers shared by the farm data tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt


async def until(check: Callable[[], Awaitable[bool] | bool], within: float = 30.0, what: str = "") -> None:
    """Poll ``check`` every 0.1 s until it is true; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.1)


class Consumer:
    """A paho client that remembers the last message of every topic (retained ones included)."""

    def __init__(self, port: int) -> None:
        self.messages: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="farm-consumer")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("bambulab/#", 1), ("homeassistant/#", 1)])
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self.lock:
            self.messages[message.topic] = bytes(message.payload)

    def get(self, topic: str) -> bytes | None:
        with self.lock:
            return self.messages.get(topic)

    def json(self, topic: str) -> Any:
        raw = self.get(topic)
        return json.loads(raw) if raw else None

    def topics(self, prefix: str) -> list[str]:
        with self.lock:
            return [t for t in self.messages if t.startswith(prefix)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextlib.contextmanager
def running(cmd: list[str], *, cwd: Path, log_name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child process whose output goes to a log file in ``cwd``; stopped on exit."""
    log = (cwd / log_name).open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    try:
        yield proc
    finally:
        stop_process(proc)
        log.close()
