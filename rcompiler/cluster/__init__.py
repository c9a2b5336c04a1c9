"""Build and time candidates across the machines of a Ray cluster (the `ray` extra).

    python -m rcompiler.tune --kernel matmul --cluster 127.0.0.1:6379

Imported only when a cluster is asked for: without one, nothing here is loaded.
"""
from .driver import Cluster, ClusterError, RunnerGroup

__all__ = ["Cluster", "ClusterError", "RunnerGroup", "connect"]


def connect(address: str) -> Cluster:
    """A cluster at `address`: host:port of its head, ray://host:port (Ray Client), or 'auto':
    $RAY_ADDRESS if set, else the cluster this machine belongs to (inside a Ray job)."""
    import importlib.util
    import os

    if importlib.util.find_spec("ray") is None:
        raise ClusterError("a cluster needs Ray: pip install 'rcompiler[ray]'")
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    return Cluster(address)
