"""The public API: lazy optional dependencies, documented names."""

import subprocess
import sys

import torchrl_vta


def test_import_pulls_in_no_optional_dependency():
    code = (
        "import sys, torchrl_vta; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'dm_control', 'ale_py', 'wandb', 'hydra', 'omegaconf', 'imageio', 'matplotlib'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_has_a_docstring_with_an_example():
    import inspect

    missing = [
        name for name in torchrl_vta.__all__
        if (inspect.isclass(getattr(torchrl_vta, name)) or callable(getattr(torchrl_vta, name)))
        and ">>>" not in (getattr(torchrl_vta, name).__doc__ or "")
    ]
    assert not missing, missing


def test_the_example_script_uses_only_the_public_api():
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "examples" / "vta_dreamer.py").read_text()
    imports = [line for line in source.splitlines() if "torchrl_vta" in line and "import" in line]
    assert imports == ["from torchrl_vta import ("], imports
