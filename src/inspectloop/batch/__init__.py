"""Heavy batch work (re-scoring an archive, embedding months of images) on one engine: this process or Ray."""

from inspectloop.batch.engine import Engine, LocalEngine, RayEngine, open_engine

__all__ = ["Engine", "LocalEngine", "RayEngine", "open_engine"]
