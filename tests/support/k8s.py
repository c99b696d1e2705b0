"""deploy/k8s rendered by the real kustomize, the one built into kubectl
(`kubectl kustomize DIR`, what `kubectl apply -k DIR` applies). No cluster is needed."""

import functools
import shutil
import subprocess
import sysconfig
from pathlib import Path
from typing import Any

import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# A render takes well under a second; this only stops a hung kubectl from hanging a test.
TIMEOUT_SECONDS = 60.0


class KustomizeError(RuntimeError):
    """kubectl is missing, or `kubectl kustomize` refused or failed to render."""


def kubectl() -> str:
    """The kubectl to run: the one scripts/setup put in the venv (only when the machine
    had none), else the one on PATH."""
    bundled = Path(sysconfig.get_path("scripts")) / "kubectl"
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("kubectl")
    if found is None:
        raise KustomizeError(
            "kubectl not found (neither in the venv nor on PATH): the manifest tests render "
            "deploy/k8s with `kubectl kustomize`; run ./scripts/setup, which installs it"
        )
    return found


@functools.cache
def _render(directory: Path) -> str:
    # Cached: the tests render the same few overlays many times.
    argv = [kubectl(), "kustomize", str(directory)]
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise KustomizeError(f"{' '.join(argv)} took over {TIMEOUT_SECONDS:.0f} s") from exc
    if result.returncode != 0:
        raise KustomizeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize directory` renders, freshly parsed (callers may
    change them)."""
    return [doc for doc in yaml.safe_load_all(_render(directory.resolve())) if doc is not None]
