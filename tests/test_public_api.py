"""The public API: lazy optional dependencies, documented names."""

import subprocess
import sys

import torchrl_vta


def test_import_pulls_in_no_optional_dependency():
    code = (
        "import sys, torchrl_vta; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'dm_control', 'ale_py', 'wandb', 'hydra', 'omegaconf', 'imageio'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_public_name_has_a_docstring_with_an_example():
    missing = [
        name for name in torchrl_vta.__all__
        if ">>>" not in (getattr(torchrl_vta, name).__doc__ or "")
    ]
    assert not missing, missing
