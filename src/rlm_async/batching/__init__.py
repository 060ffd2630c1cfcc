"""Batches: many requests through the engine on every core, or on a Ray cluster.

``await batch("requests.jsonl", out="results.jsonl", model=...)`` runs each request as a
completion in worker processes (each an event loop with many rows in flight), streams each
result to the output as it finishes, and skips the ids answered there by an earlier run.
"""

from rlm_async.batching._run import BatchStatus, BatchSummary, batch

__all__ = ["BatchStatus", "BatchSummary", "batch"]
