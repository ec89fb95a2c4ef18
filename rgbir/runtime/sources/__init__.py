"""Camera and file sources. ``open_source(spec)`` picks the kind from the spec string."""

from .base import Source, SourceError
from .factory import open_source
from .folder import ImageFolderSource
from .opencv import VideoSource

__all__ = ["Source", "SourceError", "open_source", "ImageFolderSource", "VideoSource"]
