"""Serving rgbir models from Triton Inference Server: model repositories (``triton_repo``); the client side is the
``triton://`` backend in ``rgbir.runtime.backends.triton_backend``."""

from .triton_repo import RepoOptions, Repository, network_tensors, write_repository

__all__ = ["RepoOptions", "Repository", "network_tensors", "write_repository"]
