"""Every layer of keras_dehaze.layers goes through the shared checks (tests/layer_testing.py)."""

import ast
import pathlib

import keras_dehaze.layers

HERE = pathlib.Path(__file__).resolve().parent


def _layers_given_to_run_layer_test(path):
    """Class names whose instances a test file passes to run_layer_test, directly or through a
    variable assigned from the constructor."""
    tree = ast.parse(path.read_text())
    constructed = {}  # variable -> class name
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constructed[target.id] = node.value.func.id
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_layer_test" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Call) and isinstance(first.func, ast.Name):
                names.add(first.func.id)
            elif isinstance(first, ast.Name) and first.id in constructed:
                names.add(constructed[first.id])
    return names


def test_every_layer_passes_through_run_layer_test():
    checked = set().union(*(_layers_given_to_run_layer_test(p) for p in HERE.glob("test_*.py")))
    missing = sorted(set(keras_dehaze.layers.__all__) - checked)
    assert not missing, f"layers without run_layer_test in tests/layers: {missing}"
