"""The type stubs name every public class, method and attribute of the
extension module, and nothing it lacks."""

import ast
from pathlib import Path

import cuframes
from cuframes import _cuframes

STUB = Path(cuframes.__file__).with_name("_cuframes.pyi")


def stub_names():
    tree = ast.parse(STUB.read_text())
    top, members = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            top.add(node.name)
            members[node.name] = {
                n.target.id if isinstance(n, ast.AnnAssign) else n.name
                for n in node.body
                if isinstance(n, (ast.FunctionDef, ast.AnnAssign))
            }
        elif isinstance(node, ast.AnnAssign):
            top.add(node.target.id)
        elif isinstance(node, ast.Assign):
            top.update(t.id for t in node.targets)
    return top, members


def public(names):
    return {n for n in names if not n.startswith("_") or n in (
        "__version__", "__dlpack__", "__dlpack_device__", "__cuda_array_interface__",
        "__enter__", "__exit__", "__iter__", "__next__", "__len__")}


def test_every_public_name_has_a_stub():
    top, members = stub_names()
    runtime = public(dir(_cuframes)) - {"StreamLike"}
    assert runtime <= top, runtime - top
    for cls in (cuframes.Subscriber, cuframes.Frame, cuframes.Plane, cuframes.Packet,
                cuframes.CodecParams, cuframes.Publisher):
        have = public(set(vars(cls)))
        assert have == public(members[cls.__name__]), cls.__name__


def test_every_export_is_documented():
    for name in cuframes.__all__:
        obj = getattr(cuframes, name)
        if isinstance(obj, type):
            assert obj.__doc__ or STUB.read_text().count(f"class {name}"), name
