"""Render deploy/k8s kustomizations offline, for the tests (no kustomize binary here).

Implements the subset of `kustomize build` these manifests use, with kustomize's
semantics: `resources` (files, or directories holding a kustomization.yaml), `namespace`
(set on every namespaced object), `images` (name -> newName/newTag), `replicas` and
`patches` given as strategic-merge files (objects matched by kind + name; maps merged,
lists of named items merged by `name`, other lists replaced). Anything else in a
kustomization is refused, so a manifest cannot silently rely on a feature this renderer
ignores. Real clusters use `kubectl apply -k`, which renders the same objects.

    python deploy/k8s/kustomize_lite.py deploy/k8s/overlays/prod > prod.yaml
"""

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "images", "replicas", "patches"}
# Kinds without a namespace among those we render.
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class RenderError(Exception):
    """The kustomization uses something this renderer does not implement, or is broken."""


def load_yaml(path: Path) -> list[Obj]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def build(directory: Path) -> list[Obj]:
    """The objects `kustomize build directory` would print, in resource order."""
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    (spec,) = load_yaml(path)
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise RenderError(f"{path}: unsupported fields {sorted(unknown)}")
    objects: list[Obj] = []
    for entry in spec.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            objects.extend(build(target))
        elif target.is_file():
            if directory.resolve() not in target.parents:
                raise RenderError(f"{path}: file {entry} is outside the kustomization root")
            objects.extend(load_yaml(target))
        else:
            raise RenderError(f"{path}: resource {entry} not found")
    objects = [copy.deepcopy(o) for o in objects]
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise RenderError(f"{path}: only `patches: - path:` is supported")
        for doc in load_yaml(directory / patch["path"]):
            apply_patch(objects, doc, path)
    for item in spec.get("replicas", []):
        found = _find(objects, ("Deployment", "StatefulSet"), item["name"])
        if not found:
            raise RenderError(f"{path}: replicas for unknown workload {item['name']}")
        for obj in found:
            obj["spec"]["replicas"] = int(item["count"])
    for image in spec.get("images", []):
        _set_image(objects, image)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] == "Namespace":
                continue
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    _check_unique(objects, path)
    return objects


def apply_patch(objects: list[Obj], patch: Obj, origin: Path) -> None:
    """Strategic-merge `patch` into the one object of its kind and name."""
    name = patch.get("metadata", {}).get("name")
    found = _find(objects, (patch["kind"],), name)
    if len(found) != 1:
        raise RenderError(f"{origin}: patch target {patch['kind']}/{name} not found once")
    merged = merge(found[0], patch)
    found[0].clear()
    found[0].update(merged)


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge: maps recursively, named lists by `name`, anything else replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if _named_list(base) and _named_list(patch):
        out_list = [copy.deepcopy(item) for item in base]
        index = {item["name"]: i for i, item in enumerate(out_list)}
        for item in patch:
            if item["name"] in index:
                out_list[index[item["name"]]] = merge(out_list[index[item["name"]]], item)
            else:
                out_list.append(copy.deepcopy(item))
        return out_list
    return copy.deepcopy(patch)


def _named_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(i, dict) and "name" in i for i in value)
    )


def _find(objects: list[Obj], kinds: tuple[str, ...], name: str | None) -> list[Obj]:
    return [o for o in objects if o["kind"] in kinds and o["metadata"].get("name") == name]


def pod_spec(obj: Obj) -> Obj | None:
    """The pod template's spec of a workload (Deployment, Job, ...), else None."""
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    template = spec.get("template")
    return template.get("spec") if isinstance(template, dict) else None


def containers(obj: Obj) -> list[Obj]:
    spec = pod_spec(obj)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _set_image(objects: list[Obj], image: Obj) -> None:
    for obj in objects:
        for container in containers(obj):
            ref = str(container.get("image", ""))
            name, _, tag = ref.partition(":")
            if name != image["name"]:
                continue
            new_name = image.get("newName", name)
            new_tag = image.get("newTag", tag)
            container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def _check_unique(objects: list[Obj], origin: Path) -> None:
    seen: set[tuple[str, str, str]] = set()
    for obj in objects:
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        if key in seen:
            raise RenderError(f"{origin}: duplicate object {key}")
        seen.add(key)


if __name__ == "__main__":
    yaml.safe_dump_all(build(Path(sys.argv[1])), sys.stdout, sort_keys=False)
