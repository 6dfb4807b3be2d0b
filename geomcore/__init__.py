"""geomcore: certified, batched geometry of neural representations (JAX).

The engine (hull distances and overlap decisions with certificates), DirectProbe
clustering and prediction, the paper's geometric measures, MLP classifier
probes, and scikit-learn estimators. geomcore never imports torch.
"""

from geomcore.analysis import (
    analyze_probe,
    cluster_pair_distances,
    distance_vector,
    inside_distances,
    label_centroids,
    label_pair_distances,
    min_distance_per_label,
    pearson_r,
    spatial_similarity,
)
from geomcore.directprobe import DirectProbeClassifier, Probe, directprobe
from geomcore.distances import (
    LabelDistances,
    PointHullDistances,
    hull_distance,
    hull_distances,
    label_distances,
    label_distances_layers,
    overlaps,
    point_hull_distances,
)
from geomcore.estimators import HardMarginSVC
from geomcore.multiprocess import (
    distributed_hull_distances,
    distributed_label_distances,
    distributed_overlaps,
)
from geomcore.mlp import MLPConfig, MLPGrid, MLPProbe, MLPProbeResult, mlp_probe
from geomcore.probe_many import probe_many
from geomcore.results import HullResult, HullResults, Status

__all__ = [
    "DirectProbeClassifier",
    "HardMarginSVC",
    "HullResult",
    "HullResults",
    "LabelDistances",
    "MLPConfig",
    "MLPGrid",
    "MLPProbe",
    "MLPProbeResult",
    "PointHullDistances",
    "Probe",
    "Status",
    "analyze_probe",
    "cluster_pair_distances",
    "directprobe",
    "distance_vector",
    "distributed_hull_distances",
    "distributed_label_distances",
    "distributed_overlaps",
    "hull_distance",
    "hull_distances",
    "inside_distances",
    "label_centroids",
    "label_distances",
    "label_distances_layers",
    "label_pair_distances",
    "min_distance_per_label",
    "mlp_probe",
    "overlaps",
    "pearson_r",
    "point_hull_distances",
    "probe_many",
    "spatial_similarity",
]
__version__ = "0.1.0"
