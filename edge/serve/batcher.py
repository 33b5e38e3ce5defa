"""Dynamic batching: a bounded per-model queue, a scheduler and K execution-context threads.

How a batch forms (Triton's dynamic batcher, simplified): when an instance is idle, the
scheduler takes the oldest queued request and gathers later ones with the same shapes
(all dims but the leading batch dim) until their batch dims sum to ``max_batch`` or the
oldest request has waited ``max_queue_delay_s``. Requests with other shapes stay queued,
in order, for a later batch. The batch runs on one instance's own thread and context, so
the event loop never blocks; results are split back along dim 0 per request.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edge.errors import InputError
from edge.serve.metrics import ModelStats
from edge.serve.protocol import ServeError

if TYPE_CHECKING:
    from edge.serve.model import ServedModel

__all__ = ["BatchingConfig", "DynamicBatcher"]


@dataclass(frozen=True)
class BatchingConfig:
    """Scheduling knobs for one model; ``max_batch`` 1 turns batching off.

    No defaults here: the CLI's flags are the one place that holds them.
    """

    max_batch: int
    max_queue_delay_s: float
    instances: int
    max_queue: int


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    size: int
    key: tuple | None  # requests batch together only when keys are equal; None never batches
    future: asyncio.Future
    enqueued_ns: int


class DynamicBatcher:
    """Queues requests for one model and runs them, batched, on ``instances`` contexts."""

    def __init__(self, model: ServedModel, config: BatchingConfig, stats: ModelStats) -> None:
        self.model = model
        self.config = config
        self.stats = stats
        self._batching = model.batchable and config.max_batch > 1
        self._contexts = [model.engine.create_context() for _ in range(config.instances)]
        self._threads = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"edgetrt-{model.name}-{i}") for i in range(config.instances)
        ]
        self._queue: deque[_Pending] = deque()
        self._arrived = asyncio.Event()
        self._idle: asyncio.Queue[int] = asyncio.Queue()
        self._executing: set[asyncio.Task] = set()
        self._scheduler: asyncio.Task | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the scheduler (call from the event loop that will serve requests)."""
        for index in range(self.config.instances):
            self._idle.put_nowait(index)
        self._scheduler = asyncio.create_task(self._schedule(), name=f"edgetrt-batcher-{self.model.name}")

    async def submit(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Queue one validated request and wait for its outputs.

        Raises:
            ServeError: 503 when the queue is full or the server is draining; 400 when the
                engine rejects the inputs; 500 when execution fails.
        """
        if self._closing:
            raise ServeError(503, f"model '{self.model.name}' is shutting down")
        if len(self._queue) >= self.config.max_queue:
            raise ServeError(503, f"model '{self.model.name}' queue is full ({self.config.max_queue} requests); retry later")
        first = next(iter(feeds.values()))
        size = first.shape[0] if self.model.batchable else 1
        key = tuple((a.shape[1:], a.dtype.str) for a in feeds.values()) if self._batching else None
        pending = _Pending(feeds, size, key, asyncio.get_running_loop().create_future(), time.perf_counter_ns())
        self._queue.append(pending)
        self.stats.pending = len(self._queue)
        self.stats.inflight += 1
        self._arrived.set()
        try:
            return await pending.future
        finally:
            self.stats.inflight -= 1

    async def stop(self) -> None:
        """Stop taking requests, finish every queued and running one, then free the threads."""
        self._closing = True
        self._arrived.set()
        while self._queue or self._executing:
            await asyncio.sleep(0.005)
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        for thread in self._threads:
            thread.shutdown(wait=True)

    async def _schedule(self) -> None:
        while True:
            instance = await self._idle.get()
            batch = await self._next_batch()
            task = asyncio.create_task(self._execute(instance, batch))
            self._executing.add(task)
            task.add_done_callback(self._executing.discard)

    async def _next_batch(self) -> list[_Pending]:
        """Wait for work, then gather a batch as the module docstring describes."""
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            head = self._queue[0]
            if head.future.done():  # its caller went away
                self._queue.popleft()
                continue
            picked = self._compatible(head)
            size = sum(p.size for p in picked)
            wait_s = self.config.max_queue_delay_s - (time.perf_counter_ns() - head.enqueued_ns) / 1e9
            if head.key is None or size >= self.config.max_batch or wait_s <= 0 or self._closing:
                break
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        taken = {id(p) for p in picked}
        self._queue = deque(p for p in self._queue if id(p) not in taken)
        self.stats.pending = len(self._queue)
        return picked

    def _compatible(self, head: _Pending) -> list[_Pending]:
        """The head plus later same-shape requests that still fit in ``max_batch``."""
        picked, size = [head], head.size
        if head.key is None:
            return picked
        for p in self._queue:
            if size >= self.config.max_batch:
                break
            if p is not head and p.key == head.key and size + p.size <= self.config.max_batch and not p.future.done():
                picked.append(p)
                size += p.size
        return picked

    async def _execute(self, instance: int, batch: list[_Pending]) -> None:
        start_ns = time.perf_counter_ns()
        loop = asyncio.get_running_loop()
        try:
            results, timings = await loop.run_in_executor(self._threads[instance], self._run, instance, batch)
        except Exception as exc:  # every request of the batch gets the same answer
            status = 400 if isinstance(exc, InputError) else 500
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(ServeError(status, f"model '{self.model.name}': {exc}"))
        else:
            self.stats.record_execution(sum(p.size for p in batch), [start_ns - p.enqueued_ns for p in batch], *timings)
            for p, outputs in zip(batch, results):
                if not p.future.done():
                    p.future.set_result(outputs)
        finally:
            self._idle.put_nowait(instance)

    def _run(self, instance: int, batch: list[_Pending]) -> tuple[list[dict[str, np.ndarray]], tuple[int, int, int]]:
        """Worker thread: stack inputs, run the context, split outputs per request."""
        t0 = time.perf_counter_ns()
        if len(batch) == 1:
            feeds = batch[0].feeds
        else:
            feeds = {name: np.concatenate([p.feeds[name] for p in batch]) for name in batch[0].feeds}
        t1 = time.perf_counter_ns()
        outputs = self._contexts[instance].run(feeds)
        t2 = time.perf_counter_ns()
        total = sum(p.size for p in batch)
        bounds = np.cumsum([p.size for p in batch])[:-1]
        results: list[dict[str, np.ndarray]] = [{} for _ in batch]
        for name, array in outputs.items():
            if len(batch) > 1 and array.shape[:1] != (total,):
                raise RuntimeError(f"output '{name}' has leading dim {array.shape[:1]}, expected the batch size {total}")
            # Copies: a context may reuse its output buffers on the next run, while these
            # arrays are still being serialized on the event loop.
            for result, part in zip(results, np.split(array, bounds) if len(batch) > 1 else [array]):
                result[name] = np.array(part, copy=True)
        t3 = time.perf_counter_ns()
        return results, (t1 - t0, t2 - t1, t3 - t2)
