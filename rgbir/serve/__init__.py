"""Serving rgbir models from Triton Inference Server: model repositories (``triton_repo``); the client side is the
``triton://`` backend in ``rgbir.runtime.backends.triton_backend``, and what both sides agree on (config parameters,
tensor names) is ``rgbir.triton_contract``."""

from ..triton_contract import network_tensors
from .triton_repo import RepoOptions, Repository, write_repository

__all__ = ["RepoOptions", "Repository", "network_tensors", "write_repository"]
