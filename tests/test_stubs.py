"""python/fastlogits/_native.pyi must describe the compiled extension exactly: same names, same
parameters (the binary's signatures come from PyO3's __text_signature__)."""

from __future__ import annotations

import ast
import inspect
import types
from pathlib import Path

import pytest
from fastlogits import _native

STUB = Path(__file__).resolve().parents[1] / "python" / "fastlogits" / "_native.pyi"


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def params(fn: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    return [n for n in names if n not in ("self", "cls")]


def binary_params(obj) -> list[str]:
    return [p for p in inspect.signature(obj).parameters if p not in ("self", "cls", "$self", "$cls")]


def public(names):
    return {n for n in names if not n.startswith("_") or n == "__version__"}


def test_module_names_match():
    tree = stub_tree()
    stub_names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stub_names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            stub_names.add(node.target.id)
    assert public(stub_names) == public(dir(_native)) - {"_native"}


FUNCS = [n for n in ast.parse(STUB.read_text()).body if isinstance(n, ast.FunctionDef)]
CLASSES = [n for n in ast.parse(STUB.read_text()).body if isinstance(n, ast.ClassDef)]


@pytest.mark.parametrize("fn", FUNCS, ids=[f.name for f in FUNCS])
def test_function_signatures(fn):
    assert params(fn) == binary_params(getattr(_native, fn.name))


@pytest.mark.parametrize("cls", CLASSES, ids=[c.name for c in CLASSES])
def test_class_members(cls):
    native = getattr(_native, cls.name)
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef)]
    if issubclass(native, BaseException):
        return
    stub_names = {m.name for m in methods}
    native_names = {n for n in vars(native) if not n.startswith("_") or n in ("__call__", "__len__")}
    assert stub_names - {"__init__", "__new__"} == native_names
    for m in methods:
        if any(isinstance(d, ast.Name) and d.id == "property" for d in m.decorator_list):
            assert isinstance(vars(native)[m.name], types.GetSetDescriptorType), m.name
            continue
        target = native if m.name in ("__init__", "__new__") else getattr(native, m.name)
        got = binary_params(target)
        if m.name.startswith("__") and got == ["args", "kwargs"]:
            continue  # a C slot wrapper: CPython keeps no signature for it
        assert params(m) == got, m.name
