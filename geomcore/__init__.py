"""geomcore: certified, batched geometry of neural representations (JAX)."""

from geomcore.results import HullResult, HullResults, Status

__all__ = ["HullResult", "HullResults", "Status"]
__version__ = "0.1.0"
