"""Jobs received over HTTP, held by the server until the client settles them."""

from __future__ import annotations

import time

from tidings.api.queue import AsyncQueue, Job
from tidings.server.http.errors import HttpError

REMEMBER_S = 300.0
"""How long a job is remembered after its lock ends, so that settling it late says why
(settled already, lock expired: 409) instead of not knowing it (404)."""


def job_id(job: Job) -> str:
    """The job's id: partition-offset-delivery."""
    # the delivery makes it unique: a late settlement never settles the record's next delivery
    return f"{job.record.partition}-{job.offset}-{job.deliveries}"


class HeldQueue:
    """A queue the server receives from for its clients, and the jobs they hold."""

    def __init__(self, queue: AsyncQueue) -> None:
        self.queue = queue
        self._jobs: dict[str, Job] = {}

    def hold(self, jobs: list[Job]) -> None:
        """Keep `jobs` until settled; forget those whose locks ended long ago."""
        forget = time.time() * 1000 - REMEMBER_S * 1000
        self._jobs = {i: j for i, j in self._jobs.items() if j.lock_until > forget}
        self._jobs.update((job_id(job), job) for job in jobs)

    def job(self, ident: str) -> Job:
        """The job received as `ident`, or 404."""
        job = self._jobs.get(ident)
        if job is None:
            raise HttpError(
                404,
                "unknown_job",
                f"no job {ident!r} of queue ({self.queue.topic!r}, group {self.queue.group!r}) "
                f"is held here: ids come from POST /queues/{self.queue.topic}/"
                f"{self.queue.group}/receive and are forgotten {REMEMBER_S:g} s after "
                f"their lock ends; receive again",
            )
        return job

    def busy(self) -> bool:
        """Whether a job handed out still has its lock (the queue must stay open for it)."""
        now = time.time() * 1000
        return any(job.lock_until > now for job in self._jobs.values())
