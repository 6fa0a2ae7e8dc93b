"""Test-wide settings: one torch thread (test tensors are tiny; threads only add contention),
inherited by the notebook kernels and CLI subprocesses the tests start."""

import os

import torch

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
