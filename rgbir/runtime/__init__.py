"""Torch-free inference runtime, the data path from camera to result: sources, pairing, preprocessing, backends,
postprocessing (Jetson deploys without torch); what leaves the box (sinks, brokers, metrics, ...) is ``outputs``."""
