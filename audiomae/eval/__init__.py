"""Evaluation: speech-quality metrics and the PLC benchmark runner."""

from audiomae.eval.metrics import lsd_lost, pesq_wb, plcmos, stoi
from audiomae.eval.plc_benchmark import run_plc_benchmark

__all__ = ["lsd_lost", "pesq_wb", "plcmos", "run_plc_benchmark", "stoi"]
