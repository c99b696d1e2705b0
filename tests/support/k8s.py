"""The deploy/k8s renderer (kustomize_lite.py), loaded for the offline manifest tests."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def load_renderer() -> ModuleType:
    """deploy/k8s/kustomize_lite.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("kustomize_lite", K8S / "kustomize_lite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kustomize_lite"] = module
    spec.loader.exec_module(module)
    return module
