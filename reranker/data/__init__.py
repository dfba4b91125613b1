"""Data layer: Dataset, loaders, splits and the generated demo world."""

from .dataset import Dataset, LoadReport
from .loaders import FORMATS, load
from .ordering import TIE_RULES, TieOrder, TieRule
from .splits import LeaveOneOutSplit, cap_history, leave_one_out, random_split

__all__ = [
    "Dataset", "LoadReport", "load", "FORMATS",
    "leave_one_out", "random_split", "cap_history", "LeaveOneOutSplit",
    "TieOrder", "TieRule", "TIE_RULES",
]
