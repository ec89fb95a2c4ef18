"""Torch-free inference runtime: preprocessing, backends, postprocessing (Jetson deploys without torch)."""
