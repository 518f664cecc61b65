"""The job's progress lines on the driver, for workers on this machine."""

import collections
import logging
import os
import threading
import time

from foodpipe import logs, scratch, storage

log = logging.getLogger("foodpipe.preprocess")


class Progress:
    """Progress lines on the driver while the job validates images: ``done/total`` files and files
    per second, every ``FOODPIPE_PROGRESS_SECONDS`` seconds (default 10), and at the end how the work
    was shared among the worker processes. Each shard-writing DoFn instance writes its count to a
    file in a local folder (``transforms.WriteShardFn``), so this works for workers on this machine (the
    DirectRunner, a Dask cluster on loopback)."""

    def __init__(self, total: int):
        self.total = total
        self.folder = scratch.make("progress")
        self.interval = logs.progress_seconds()
        self.started = time.monotonic()
        self.first_and_last: tuple[float, float] | None = None  # of the images validated, once it is over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report_until_stopped, name="preprocess-progress", daemon=True)

    def reports(self) -> list[tuple[str, int, float, float]]:
        """``(process id, files, first, latest)`` of every DoFn instance that reported so far
        (instances report as ``PID-INSTANCE`` files holding ``COUNT FIRST LATEST``)."""
        found = []
        for path in storage.list_files(self.folder):
            try:
                count, first, latest = storage.read(path).split()
                found.append((os.path.basename(path).split("-")[0], int(count), float(first), float(latest)))
            except (OSError, ValueError):  # replaced while read
                pass
        return found

    def _span(self) -> tuple[float, float] | None:
        """Wall-clock times of the first and the last image validated, once any was."""
        found = self.reports()
        if not found:
            return None
        return min(first for _, _, first, _ in found), max(latest for *_, latest in found)

    def report(self, final: bool = False) -> None:
        found = self.reports()
        done = sum(count for _, count, _, _ in found)
        line = f"preprocess: {done}/{self.total} images validated " \
               f"({done / max(time.monotonic() - self.started, 1e-9):.0f} images/s)"
        if final and found:  # how the work was shared, and its rate once the workers had started
            per_process: dict[str, int] = collections.Counter()
            for process_id, count, _, _ in found:
                per_process[process_id] += count
            span = max(latest for *_, latest in found) - min(first for _, _, first, _ in found)
            shares = ", ".join(map(str, sorted(per_process.values(), reverse=True)))
            line += (f" by {len(per_process)} worker processes ({shares}); {span:.1f} s from the first image to "
                     f"the last: {done / max(span, 1e-9):.0f} images/s")
        log.info("%s", line)

    def _report_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self.report()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        if exc_info[0] is None:
            self.report(final=True)
        self.first_and_last = self._span()
        scratch.remove(self.folder)
