"""Tune a whole module: each distinct task is its own study, a task scheduler splits the
budget among them, and the best schedules are composed into one script that is
verified and timed end to end.

Every task study is an ordinary resumable study (kernel = the task alone), so a
killed module run replays what its tasks measured and goes on; the composed
program's measurement is stored too, under the outlined module's fingerprint.
"""
from __future__ import annotations

import hashlib
import json
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Callable

from rcompiler.db import Database, DatabaseError
from rcompiler.hardware import Hardware
from rcompiler.kernels.module import Program, Task
from rcompiler.lifetime import Interrupted
from rcompiler.measure import Backend, Candidate, LocalRunners, MeasurerBase, WorkerPoolError
from rcompiler.measure.results import Measurement
from rcompiler.transforms import ModuleEntry, Schedule, render_module

from .task_scheduler import TaskScheduler
from .tuner import SampleRecord, TuneConfig, Tuner, TuneResult


@dataclass
class TaskOutcome:
    """One distinct task: where it occurs, how it was tuned, what it got."""

    task: Task
    instances: list[str]  # the outlined functions that share it
    result: TuneResult | None = None
    error: str | None = None  # why it could not be tuned at all (it stays naive in the program)

    @property
    def weight(self) -> int:
        return len(self.instances)

    @property
    def best(self) -> SampleRecord | None:
        return self.result.best if self.result else None


@dataclass
class ModuleResult:
    program: Program
    hardware: Hardware
    config: TuneConfig
    tasks: list[TaskOutcome]
    naive_seconds: float | None = None  # the module as given, lowered naively, end to end
    best: Measurement | None = None  # the composed program, end to end
    parts: dict[str, Schedule] = field(default_factory=dict)  # task key -> schedule in the program
    dropped: dict[str, str] = field(default_factory=dict)  # task key -> why its schedule was left out
    stopped: str | None = None
    wall_seconds: float = 0.0
    runner_stats: dict = field(default_factory=dict)  # a cluster's runners, and what they lost

    @property
    def best_seconds(self) -> float | None:
        return self.best.seconds if self.best is not None and self.best.ok else None

    @property
    def speedup(self) -> float | None:
        return self.naive_seconds / self.best_seconds if self.naive_seconds and self.best_seconds else None

    @property
    def samples(self) -> int:
        return sum(len(t.result.samples) for t in self.tasks if t.result)

    def gflops(self, seconds: float | None) -> float | None:
        return self.program.kernel.flops / seconds / 1e9 if seconds else None

    @property
    def best_script(self) -> str | None:
        return compose(self.program, self.parts).text if self.parts else None


def compose(program: Program, parts: dict[str, Schedule]):
    """The module script applying each task's schedule to every function of that task."""
    functions = {t.function: t for t in program.tunable if t.key in parts}  # identical tasks share one
    return render_module([(name, parts[t.key], t.kernel) for name, t in functions.items()],
                         ModuleEntry(program.kernel.func_name, program.entry_pads, program.entry_fills))


def outgrows_cache(kernel, hardware: Hardware) -> bool:
    """Whether one call's arguments (what it reads and writes at least) exceed the last-level
    cache, so that every call meets them in memory."""
    return sum(a.nbytes for a in kernel.args) > hardware.l3_bytes > 0


def parts_key(parts: dict[str, Schedule]) -> str:
    return hashlib.sha256(json.dumps(sorted((k, s.key) for k, s in parts.items())).encode()).hexdigest()[:16]


class ModuleTuner:
    def __init__(self, program: Program, config: TuneConfig, db: Database,
                 on_sample: Callable[[SampleRecord, Tuner], None] | None = None, backend: Backend | None = None):
        self.program, self.config, self.db = program, config, db
        self.backend = backend or LocalRunners()
        self.hardware = self.backend.hardware
        groups: dict[str, TaskOutcome] = {}
        for task in program.tunable:
            groups.setdefault(task.key, TaskOutcome(task, [])).instances.append(task.name)
        self.outcomes = list(groups.values())
        # Each task is an open-ended study; the module's budget and time budget rule.
        task_config = replace(config, budget=10**9, time_budget=None, warm_start=config.strategy == "mcts")
        # A program whose data outgrow the last-level cache meets its weights in memory on every
        # call; its tasks are timed so too, or the search favours schedules that only pay off
        # with warm caches (packing a weight matrix on every call, for one).
        self.cold = outgrows_cache(program.original, self.hardware)
        self.tuners = [Tuner(replace(o.task.kernel, cold_cache=self.cold), task_config, db, on_sample, self.backend)
                       for o in self.outcomes]
        self.interrupt: Interrupted | None = None

    def run(self) -> ModuleResult:
        start = time.monotonic()
        result = ModuleResult(self.program, self.hardware, self.config, self.outcomes)
        try:
            self._tune_tasks(start)
            try:
                self._compose_and_measure(result)
            except WorkerPoolError:
                raise
            except RuntimeError as err:  # what the tasks measured is kept, and reported
                result.stopped = f"the program could not be composed: {err}"
        except Interrupted as interrupt:
            result.stopped = f"{interrupt} after {sum(len(t.samples) for t in self.tuners)} samples"
            self.interrupt = interrupt
        except DatabaseError as err:
            result.stopped = str(err)
        finally:
            for outcome, tuner in zip(self.outcomes, self.tuners):
                outcome.result = tuner.finish()
        result.wall_seconds = time.monotonic() - start
        result.runner_stats = self.backend.stats()
        return result

    def _tune_tasks(self, start: float) -> None:
        cfg = self.config
        for outcome, tuner in zip(self.outcomes, self.tuners):
            try:
                tuner.start()
            except WorkerPoolError:  # no task's fault
                raise
            except RuntimeError as err:  # it does not run even naively on its test inputs: the rest goes on
                outcome.error = str(err)
            finally:
                tuner.close()
        scheduler = TaskScheduler([o.weight for o in self.outcomes], [t.naive_seconds or 0.0 for t in self.tuners])
        for i, outcome in enumerate(self.outcomes):
            if outcome.error is not None:
                scheduler.tell(i, None, done=True)
        if self.backend.parallel_tasks > 1:
            return self._tune_tasks_at_once(scheduler, start)
        spent = 0
        while spent < cfg.budget:
            if cfg.time_budget is not None and time.monotonic() - start > cfg.time_budget:
                break
            i = scheduler.next()
            if i is None:
                break
            tuner = self.tuners[i]
            got = tuner.advance(min(self._round_size(), cfg.budget - spent))
            tuner.close()  # the next round may be another task's: free the workers
            spent += got
            scheduler.tell(i, tuner.best_seconds, done=bool(tuner.stopped or tuner.exhausted or not got))

    def _round_size(self) -> int:
        """`--children` samples a round, fewer when the budget cannot give every task one round
        of that size (budget 4 on two tasks: 2 each, not 4 to the first and none to the second)."""
        return max(1, min(self.config.children, self.config.budget // max(1, len(self.tuners))))

    def _tune_tasks_at_once(self, scheduler: TaskScheduler, start: float) -> None:
        """With many runners (a cluster), several tasks have a round in flight at once; as one
        ends, the scheduler gives the next round to a task not already being tuned."""
        cfg = self.config
        planned = 0  # samples asked for, less what rounds that ended returned unused
        try:
            with ThreadPoolExecutor(self.backend.parallel_tasks, thread_name_prefix="task") as pool:
                running: dict = {}  # future -> (task, samples asked)
                try:
                    while True:
                        out_of_time = cfg.time_budget is not None and time.monotonic() - start > cfg.time_budget
                        while (not out_of_time and len(running) < self.backend.parallel_tasks
                               and planned < cfg.budget):
                            i = scheduler.next(busy={t for t, _ in running.values()})
                            if i is None:
                                break
                            n = min(self._round_size(), cfg.budget - planned)
                            planned += n
                            running[pool.submit(self.tuners[i].advance, n)] = (i, n)
                        if not running:
                            return
                        for future in wait(running, return_when=FIRST_COMPLETED).done:
                            i, n = running.pop(future)
                            got = future.result()
                            planned -= n - got
                            tuner = self.tuners[i]
                            scheduler.tell(i, tuner.best_seconds,
                                           done=bool(tuner.stopped or tuner.exhausted or not got))
                except BaseException as stop:  # an interrupt reaches this thread: the rounds in flight end too
                    self.backend.interrupt(stop)
                    raise
        finally:
            self.backend.interrupt(None)  # every round has ended: the backend is ready for another run

    def _compose_and_measure(self, result: ModuleResult) -> None:
        """The best schedule of every task in one script, verified and timed end to end. When
        the whole fails, tasks are added one at a time, most gain first, keeping what works."""
        best = {o.task.key: t.best_schedule_so_far() for o, t in zip(self.outcomes, self.tuners)}
        best = {k: s for k, s in best.items() if s is not None}
        for o, t in zip(self.outcomes, self.tuners):  # a schedule that loses to the naive lowering is left out
            if o.task.key in best and t.best_seconds and t.naive_seconds and t.best_seconds >= t.naive_seconds:
                del best[o.task.key]
                result.dropped[o.task.key] = (f"no faster than its naive lowering ({t.best_seconds * 1e3:.3g} ms "
                                              f"vs {t.naive_seconds * 1e3:.3g} ms)")
        # The whole program is not one of its tasks: the time limits the user gave (else the
        # unfitted ones), and its naive lowering run as few times as gives outputs and a time.
        limits = self.config.limits
        naive = replace(limits, min_time=0.0, max_timing=0.0)
        with self.backend.measurer(self.program.original, naive) as original:
            reference, result.naive_seconds = self._naive(original)
        with self.backend.measurer(self.program.kernel, limits) as measurer:
            measurer.use_reference(reference)
            measured = self._measure(measurer, best)
            if not measured.ok and len(best) > 1:
                gain = {o.task.key: o.weight * ((t.naive_seconds or 0) - (t.best_seconds or 0))
                        for o, t in zip(self.outcomes, self.tuners)}
                kept: dict[str, Schedule] = {}
                for key in sorted(best, key=lambda k: -gain[k]):
                    trial = self._measure(measurer, kept | {key: best[key]})
                    if trial.ok:
                        kept[key], measured = best[key], trial
                    else:
                        result.dropped[key] = f"{trial.status.value}: {trial.reason[:200]}"
                best = kept
            elif not measured.ok:
                result.dropped = {k: f"{measured.status.value}: {measured.reason[:200]}" for k in best}
                best = {}
        result.parts = best if measured.ok else {}
        result.best = measured if measured.ok else None

    def _measure(self, measurer: MeasurerBase, parts: dict[str, Schedule]) -> Measurement:
        kfp, hfp, key = self.program.kernel.fingerprint, self.hardware.fingerprint, parts_key(parts)
        known = self.db.measurement(kfp, hfp, key)
        if known is not None:
            return known
        script = compose(self.program, parts)
        m = measurer.measure(Candidate(script.text))
        m.reason = script.explain(m.reason) if m.reason else ""
        self.db.record_measurement(kfp, hfp, key, [{"task": k, "schedule": s.to_json()} for k, s in parts.items()], m)
        return m

    def _naive(self, original: MeasurerBase) -> tuple[list, float | None]:
        """The program's naive outputs (what every composition is verified against) and its
        naive time (stored: measured once per program and machine)."""
        m = original.measure(Candidate(None), verify=False, return_outputs=True)
        if not m.ok:
            raise RuntimeError(f"the model does not run without transforms: {m.status.value}: {m.reason}")
        kfp, hfp = self.program.original.fingerprint, self.hardware.fingerprint
        stored = self.db.baseline(kfp, hfp, "naive")
        if stored is not None:
            return m.extra.pop("outputs"), stored[0]
        self.db.record_baseline(kfp, hfp, "naive", m.seconds, {"status": m.status.value, "reason": m.reason})
        return m.extra.pop("outputs"), m.seconds
