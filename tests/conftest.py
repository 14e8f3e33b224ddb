"""Shared pytest set-up: one torch thread (faster and steadier on 2-core machines), no network."""
import torch

torch.set_num_threads(1)
