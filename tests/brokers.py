"""Real message brokers for the fleet tests: Debian's mosquitto (also with a password and a TLS listener) and
redis-server on free loopback ports, started and stopped by the tests (``stop()``/``start()`` keep the port and,
through their persistence files, what was stored; ``serving`` is a module fixture's body). Where they are not
installed the tests skip, except in CI (CI=true), which must install them (README)."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(program: str) -> str:
    """The program's path; skips the test without it, or fails in CI, where .ci/run installs it."""
    path = shutil.which(program) or next((p for p in (f"/usr/sbin/{program}", f"/usr/bin/{program}")
                                          if os.access(p, os.X_OK)), None)
    if path is None:
        message = f"{program} is not installed (apt-get install -y mosquitto redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Server:
    """A broker process on 127.0.0.1:``port``; ``start`` waits until it accepts connections."""

    def __init__(self, command: list[str], port: int, log: Path):
        self.command, self.port, self.log = command, port, log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command[0]} exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"{self.command[0]} did not listen on {self.port}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: both brokers save their persistence files first."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
        self.process = None


def mosquitto(root: Path) -> Server:
    """mosquitto 2 on a free port, anonymous, persisting sessions and queued messages across a restart (as the
    user running the tests: started as root it would switch to the user mosquitto, who cannot write here)."""
    program, port = require("mosquitto"), free_port()
    config = root / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                      f"persistence_location {root}/\nmax_queued_messages 100000\nuser {getpass.getuser()}\n")
    return Server([program, "-c", str(config)], port, root / "mosquitto.log")


def secured_mosquitto(root: Path, user: str, password: str) -> tuple[Server, int, Path]:
    """mosquitto with a listener that wants ``user``/``password`` and a TLS listener whose certificate (for
    127.0.0.1) a CA made here signed; returns the server (the password port), the TLS port and the CA file."""
    program, openssl = require("mosquitto"), shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make the test broker's certificates")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (root / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for command in ([openssl, "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
                     "/CN=rgbir test CA"],
                    [openssl, "req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
                    [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                     "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.cnf"],
                    [require("mosquitto_passwd"), "-c", "-b", "passwords", user, password]):
        subprocess.run(command, cwd=root, check=True, capture_output=True)
    port, tls_port = free_port(), free_port()
    config = root / "mosquitto.conf"
    config.write_text(f"per_listener_settings true\nuser {getpass.getuser()}\n"
                      f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {root}/passwords\n"
                      f"listener {tls_port} 127.0.0.1\nallow_anonymous true\ncafile {root}/ca.pem\n"
                      f"certfile {root}/server.pem\nkeyfile {root}/server.key\n")
    return Server([program, "-c", str(config)], port, root / "mosquitto.log"), tls_port, root / "ca.pem"


def redis_server(root: Path) -> Server:
    """redis-server on a free port without snapshots, with an fsynced append-only file (kept across a restart)."""
    program, port = require("redis-server"), free_port()
    return Server([program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                   "--appendfsync", "always", "--dir", str(root)], port, root / "redis.log")


def serving(server: Server):
    """A module fixture's body: the server running for the module's tests, stopped after them."""
    server.start()
    yield server
    server.stop()
