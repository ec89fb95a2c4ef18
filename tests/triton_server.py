"""A real Triton Inference Server for tests and benchmarks: the ``tritonserver`` 2.51 that the nvidia-pytriton wheel
bundles (Python backend only), on 127.0.0.1 with HTTP, gRPC and metrics on free loopback ports.

Its Python-backend stub links the system ``libpython3.11`` and runs its interpreter isolated (PYTHONPATH is
ignored): it takes its packages from the venv whose ``python3`` comes first on the server's PATH. So the
installation (cached under ``$XDG_CACHE_HOME/rgbir/triton-server``) is a venv made from ``/usr/bin/python3.11``
with numpy < 2 (the stub is built against numpy 1.x: with numpy 2 every output tensor comes back empty),
onnxruntime and OpenCV, plus the wheel unpacked beside it (``--no-deps``: its own requirements would pin the test
venv's numpy below 2). Each server gets a small overlay venv whose ``.pth`` adds this checkout, for the models that
import rgbir."""

from __future__ import annotations

import fcntl
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rgbir.files import cache_dir
from rgbir.preflight import free_port

SYSTEM_PYTHON = Path("/usr/bin/python3.11")
PYTRITON = "nvidia-pytriton==0.7.0"  # tritonserver 2.51.0
REQUIREMENTS = ("numpy<2", "onnxruntime", "opencv-python-headless")
CHECKOUT = Path(__file__).resolve().parents[1]


def unsupported() -> str | None:
    """Why the bundled server cannot run here, or None."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return f"the nvidia-pytriton wheel's tritonserver is for linux x86_64, not {sys.platform} {platform.machine()}"
    if not SYSTEM_PYTHON.is_file():
        return f"tritonserver's Python stub links the system libpython3.11: {SYSTEM_PYTHON} is missing"
    return None


@dataclass
class Installation:
    """The cached server: the venv its Python models run in and the unpacked wheel."""

    root: Path
    seconds: float = 0.0  # what installing took here (0: it was cached)

    @property
    def venv(self) -> Path:
        return self.root / "venv"

    @property
    def server(self) -> Path:
        return self.root / "server" / "pytriton" / "tritonserver"

    @property
    def libraries(self) -> Path:
        return self.root / "server" / "nvidia_pytriton.libs"

    @property
    def site_packages(self) -> Path:
        return site_packages(self.venv)


def site_packages(venv: Path) -> Path:
    """Where a venv made from the system Python 3.11 keeps its packages."""
    return venv / "lib" / "python3.11" / "site-packages"


def install(root: Path | None = None) -> Installation:
    """The server installation, made once (PyPI only) and reused: a ``ready`` marker is written last, under a lock."""
    root = root or cache_dir("triton-server", PYTRITON.replace("==", "-"))
    root.mkdir(parents=True, exist_ok=True)
    installation = Installation(root)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / "ready").is_file():
            return installation
        start = time.perf_counter()
        for part in ("venv", "server"):
            shutil.rmtree(root / part, ignore_errors=True)
        _run([str(SYSTEM_PYTHON), "-m", "venv", str(installation.venv)])
        pip = [str(installation.venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run(pip + list(REQUIREMENTS))
        _run(pip + ["--no-deps", "--target", str(root / "server"), PYTRITON])
        stub = installation.server / "python_backend_stubs" / "3.11" / "triton_python_backend_stub"
        shutil.copy2(stub, installation.server / "backends" / "python" / stub.name)  # where the backend looks
        (root / "ready").write_text(f"{time.perf_counter() - start:.1f}\n")
        installation.seconds = time.perf_counter() - start
    return installation


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(command[:4])} ... failed: {' | '.join(tail)}")


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free (all bound at once, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class LocalServer:
    """``tritonserver`` serving ``repository`` on 127.0.0.1 only; a context manager (stop on exit)."""

    installation: Installation
    repository: Path
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)  # http, grpc, metrics: given ones are checked, others picked
    process: subprocess.Popen | None = None
    start_seconds: float = 0.0

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.ports['http']}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.ports['grpc']}"

    @property
    def log(self) -> Path:
        return self.workdir / "tritonserver.log"

    def _environment(self) -> dict[str, str]:
        """PATH first names an overlay venv (the installation's packages + this checkout), where the stub finds
        its interpreter's packages; LD_LIBRARY_PATH the wheel's libraries."""
        overlay = self.workdir / "python"
        if not overlay.exists():
            subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(overlay)], check=True)
            (site_packages(overlay) / "rgbir-triton.pth").write_text(f"{self.installation.site_packages}\n{CHECKOUT}\n")
        env = dict(os.environ, PATH=f"{overlay / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(self.installation.libraries),
                                                        os.environ.get("LD_LIBRARY_PATH")]))
        return env

    def start(self, timeout: float = 60.0) -> LocalServer:
        """Start and wait until every model is ready (the server's health/ready); a failure names the log's tail."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        picked = iter(_free_ports(3))
        self.ports = {k: free_port(self.ports[k], f"Triton {k}") if k in self.ports else next(picked)
                      for k in ("http", "grpc", "metrics")}
        server = self.installation.server
        command = [str(server / "bin" / "tritonserver"), f"--model-repository={self.repository}",
                   f"--backend-directory={server / 'backends'}", "--exit-timeout-secs=5"]
        for kind, port in self.ports.items():
            command += [f"--{kind}-address=127.0.0.1", f"--{kind}-port={port}"]
        start = time.perf_counter()
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self._environment(),
                                            cwd=self.workdir, start_new_session=True)  # its own group: see kill()
        while not self._ready():
            if self.process.poll() is not None or time.perf_counter() - start > timeout:
                self.stop()
                tail = self.log.read_text(errors="replace").strip().splitlines()[-5:]
                raise RuntimeError(f"tritonserver did not become ready: {' | '.join(tail)}")
            time.sleep(0.05)
        self.start_seconds = time.perf_counter() - start
        return self

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http}/v2/health/ready", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def kill(self) -> None:
        """Die at once, as a crashed server would, with its Python stubs (the server's process group: a stub
        outlives a killed server by minutes otherwise)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
