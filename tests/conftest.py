import os

# dm_control reads MUJOCO_GL at import time: headless EGL rendering on CI.
os.environ.setdefault("MUJOCO_GL", "egl")

import pytest
import torch

# Two cores shared by two xdist workers: one intra-op thread each avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
