"""rgbir's version, in a module of its own so that modules inside the package (checkpoints and exports record it)
read it without importing the package's root, whose lazy ``rgbir.Pipeline`` leads into the runtime."""

__version__ = "0.1.0"
