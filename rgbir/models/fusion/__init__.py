"""Fusion and attention modules: two-stream fusion (Add, MSC) and attention blocks (TSSA, ConvAttn, CFSAM)."""

from .basic import Add
from .cfsam import CFSAM
from .convattn import ConvAttn, MiLKConvAttn
from .msc import MSC
from .tssa import C2TSSA, TSSA, TSSABlock

__all__ = ["Add", "CFSAM", "ConvAttn", "MiLKConvAttn", "MSC", "TSSA", "C2TSSA", "TSSABlock"]
