"""DirectProbe (Zhou & Srikumar, NAACL 2021): label-pure, non-overlapping clusters.

``directprobe(X, labels) -> Probe`` clusters; ``Probe.predict`` / ``rank`` /
``score`` classify by the nearest cluster hull; ``DirectProbeClassifier`` is the
scikit-learn estimator around both.
"""

from geomcore.directprobe.clustering import directprobe
from geomcore.directprobe.estimator import DirectProbeClassifier
from geomcore.directprobe.probe import Probe, ProbeStats

__all__ = ["directprobe", "Probe", "ProbeStats", "DirectProbeClassifier"]
