"""Models for Triton's Python backend, copied into repositories as ``model.py`` by ``rgbir triton-repo``. They run
inside tritonserver's Python stub, which provides ``triton_python_backend_utils``; nothing in rgbir imports them."""
