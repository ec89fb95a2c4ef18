"""Datasets: the synthetic RGB+IR scene generator and readers of YOLOMM / LLVIP layouts."""
