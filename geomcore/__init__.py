"""geomcore: certified, batched geometry of neural representations (JAX)."""

from geomcore.distances import (
    LabelDistances,
    PointHullDistances,
    hull_distance,
    hull_distances,
    label_distances,
    overlaps,
    point_hull_distances,
)
from geomcore.estimators import HardMarginSVC
from geomcore.results import HullResult, HullResults, Status

__all__ = [
    "HardMarginSVC",
    "HullResult",
    "HullResults",
    "LabelDistances",
    "PointHullDistances",
    "Status",
    "hull_distance",
    "hull_distances",
    "label_distances",
    "overlaps",
    "point_hull_distances",
]
__version__ = "0.1.0"
