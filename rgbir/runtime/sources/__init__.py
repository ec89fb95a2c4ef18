"""Camera and file sources. ``open_source(spec)`` picks the kind from the spec string; ``match_by_stem`` and
``rate_mismatch`` check a camera pair's two file sources before they are read in lockstep."""

from .base import Source, SourceError
from .factory import open_source
from .folder import ImageFolderSource, match_by_stem
from .opencv import VideoSource, rate_mismatch

__all__ = ["Source", "SourceError", "open_source", "ImageFolderSource", "VideoSource", "match_by_stem",
           "rate_mismatch"]
