"""The tuning loop: a strategy asks, the measurer measures, the database remembers.

Every measurement is written the moment it finishes. A study is named by what
defines it (kernel, hardware, strategy, proposer, seed, threads); running it
again replays its samples from the database (strategies are deterministic
given their seed and the results they are told) and measures only what is new.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from rcompiler.db import Database, DatabaseError
from rcompiler.hardware import Hardware
from rcompiler.kernels.base import Kernel
from rcompiler.lifetime import Interrupted, deferred_interrupts
from rcompiler.measure import Backend, Candidate, Limits, LocalRunners, MeasurerBase
from rcompiler.measure.results import Measurement, Status
from rcompiler.transforms import Schedule, ScheduleError, render

from .baselines import Evolutionary, RandomSearch
from .context import Evaluated, Proposal
from .heuristic import HeuristicProposer
from .mcts import MCTS
from .random_proposer import RandomProposer
from .warm_start import WarmStart, choose, family

STRATEGIES = ("mcts", "random", "evolutionary")
TRANSFER_CANDIDATES = 4  # fastest schedules of each similar task considered for a warm start
EARLY_TIMEOUTS = 3  # a run whose first this many candidates all time out stops
PROPOSERS = ("heuristic", "random", "llm")


@dataclass
class TuneConfig:
    strategy: str = "mcts"
    proposer: str = "heuristic"
    budget: int = 32  # measured samples
    seed: int = 0
    threads: int = 1
    time_budget: float | None = None  # seconds, if set
    exploration: float = 1.0
    children: int = 4
    limits: Limits = field(default_factory=Limits)
    llm: dict = field(default_factory=dict)  # options for the llm proposer
    # MCTS starts from the best schedules of similar kernels in the database (search/warm_start.py);
    # the module tuner sets it for a model's tasks
    warm_start: bool = False


@dataclass
class SampleRecord:
    seq: int
    key: str
    schedule: Schedule
    status: str
    seconds: float | None
    speedup: float | None
    reason: str
    proposer: str
    rationale: str
    parent: str | None
    reused: bool  # answered from the database, not measured in this run
    measurement: Measurement | None = None


@dataclass
class TuneResult:
    kernel: Kernel
    hardware: Hardware
    config: TuneConfig
    naive_seconds: float | None
    numpy_seconds: float | None
    numpy_detail: dict
    samples: list[SampleRecord]
    proposer_stats: dict = field(default_factory=dict)
    wall_seconds: float = 0.0
    stopped: str | None = None  # why the run ended before its budget, if it did
    strategy_stats: dict = field(default_factory=dict)  # e.g. the evolutionary cost model's use
    runner_stats: dict = field(default_factory=dict)  # a cluster's runners, and what they lost

    @property
    def best(self) -> SampleRecord | None:
        return fastest(self.samples)

    @property
    def first_guess(self) -> SampleRecord | None:
        """The first sample: what the proposer thought best before measuring anything."""
        return self.samples[0] if self.samples else None

    @property
    def best_schedule(self) -> Schedule | None:
        return self.best.schedule if self.best else None

    @property
    def best_script(self) -> str | None:
        return render(self.best.schedule, self.kernel).text if self.best else None

    def gflops(self, seconds: float | None) -> float | None:
        return self.kernel.flops / seconds / 1e9 if seconds else None

    def best_so_far(self) -> list[float]:
        """Best speedup over naive after each sample (1.0 until something beats naive)."""
        out, best = [], 1.0
        for s in self.samples:
            if s.speedup:
                best = max(best, s.speedup)
            out.append(best)
        return out


def fastest(samples: list[SampleRecord]) -> SampleRecord | None:
    """The fastest verified sample. Ties are real (the clock ticks in 10 ns); break them as the
    database's `best` does."""
    ok = [s for s in samples if s.status == "ok" and s.seconds]
    return min(ok, key=lambda s: (s.seconds, s.key)) if ok else None


def make_strategy(kernel: Kernel, hardware: Hardware, config: TuneConfig, db: Database,
                  transfers: list | None = None):
    if config.strategy == "random":
        return RandomSearch(kernel, hardware, config.threads, config.seed, config.children)
    if config.strategy == "evolutionary":
        return Evolutionary(kernel, hardware, config.threads, config.seed)
    if config.strategy == "mcts":
        proposer = make_proposer(config, db)
        if transfers:
            proposer = WarmStart(proposer, transfers)
        return MCTS(kernel, hardware, proposer, config.threads, config.seed, config.exploration, config.children)
    raise ValueError(f"unknown strategy {config.strategy!r}; choose from {', '.join(STRATEGIES)}")


def make_proposer(config: TuneConfig, db: Database):
    if config.proposer == "heuristic":
        return HeuristicProposer()
    if config.proposer == "random":
        return RandomProposer()
    if config.proposer == "llm":
        from .llm import LLMProposer

        return LLMProposer(db=db, **({"seed": config.seed} | config.llm))
    raise ValueError(f"unknown proposer {config.proposer!r}; choose from {', '.join(PROPOSERS)}")


class Tuner:
    """One study. `backend` builds and times: this machine's worker pools by default, or the
    runners of one hardware fingerprint on a cluster (rcompiler.cluster)."""

    def __init__(self, kernel: Kernel, config: TuneConfig, db: Database,
                 on_sample: Callable[[SampleRecord, "Tuner"], None] | None = None, backend: Backend | None = None):
        self.kernel, self.config, self.db = kernel, config, db
        self.backend = backend or LocalRunners()
        self.hardware = self.backend.hardware
        self.on_sample = on_sample
        self._measurer: MeasurerBase | None = None
        label = config.proposer if config.strategy == "mcts" else "-"
        self.study_name = (f"{kernel.fingerprint}/{self.hardware.fingerprint}/{config.strategy}/{label}/"
                           f"seed{config.seed}/threads{config.threads}")
        self.study = db.study(self.study_name, kernel.fingerprint, self.hardware.fingerprint, kernel.label,
                              {"strategy": config.strategy, "proposer": label, "seed": config.seed,
                               "threads": config.threads})
        self.samples: list[SampleRecord] = []
        self.naive_seconds: float | None = None
        self.best_seconds: float | None = None
        self.limits = config.limits
        self.numpy_seconds: float | None = None
        self.numpy_detail: dict = {}
        self.strategy = None
        self.stopped: str | None = None  # why the run ends before its budget
        self.exhausted = False  # the strategy has nothing new to propose
        self.interrupt: Interrupted | None = None
        self.error: DatabaseError | None = None
        self._started = time.monotonic()

    @property
    def measurer(self) -> MeasurerBase:
        if self._measurer is None:
            self._measurer = self.backend.measurer(self.kernel, self.limits, seed=0)
        return self._measurer

    def close(self) -> None:
        if self._measurer is not None:
            self._measurer.close()
            self._measurer = None

    # -- baselines (measured once per kernel and machine, kept in the database) --
    def baseline(self, kind: str) -> tuple[float | None, dict]:
        kfp, hfp = self.kernel.fingerprint, self.hardware.fingerprint
        stored = self.db.baseline(kfp, hfp, kind)
        if stored is not None:
            return stored
        m = self.measurer.measure_naive() if kind == "naive" else self.measurer.measure_numpy()
        seconds = m.seconds if m is not None and m.ok else None
        detail = {} if m is None else {"status": m.status.value, "reason": m.reason, **{
            k: v for k, v in m.extra.items() if k == "blas"}}
        if kind == "naive":  # the candidates' time limits are fitted to these
            detail |= {"build_seconds": m.build_seconds, "run_seconds": m.run_seconds}
        if kind == "naive" and seconds is None:
            raise RuntimeError(f"the kernel does not run without transforms: {m.status.value}: {m.reason}")
        self.db.record_baseline(kfp, hfp, kind, seconds, detail)
        return seconds, detail

    # -- the loop -------------------------------------------------------------------
    def run(self) -> TuneResult:
        """Tune to the budget. An interrupt (SIGINT, SIGTERM) ends the run early with what it has;
        so does a run whose first candidates all exceed their time limits."""
        try:
            self.start()
            self.advance(self.config.budget)
        except Interrupted as interrupt:
            self.stopped = f"{interrupt} after {len(self.samples)} samples"
            self.interrupt = interrupt
        except DatabaseError as err:  # what was measured is in the report, and in the database up to here
            self.stopped = str(err)
            self.error = err
        return self.finish()

    def start(self) -> None:
        """Baselines (from the database when known), fitted limits and the strategy."""
        self._started = time.monotonic()
        self.naive_seconds, naive = self.baseline("naive")
        self.numpy_seconds, self.numpy_detail = self.baseline("numpy")
        self.limits = self.config.limits.fitted(naive.get("build_seconds"), naive.get("run_seconds"))
        if self._measurer is not None:
            self._measurer.limits = self.limits
        if not self.config.warm_start:
            self.strategy = make_strategy(self.kernel, self.hardware, self.config, self.db)
        # else made at the first sample, when the tasks tuned before this one are in the database

    def _warm_strategy(self):
        """The strategy, with the transfers this study chose when it was new (kept in its config)."""
        config = self.db.study_config(self.study)
        if "warm_start" not in config:
            mine = family(self.kernel.label)
            candidates = []
            for kfp, label in self.db.kernels(self.hardware.fingerprint):
                if kfp != self.kernel.fingerprint and label and family(label) == mine:
                    # a few of its fastest: the best may not fit this shape, a near-tie may
                    candidates += [(label, steps) for steps, _ in
                                   self.db.fastest(kfp, self.hardware.fingerprint, TRANSFER_CANDIDATES)]
            config["warm_start"] = choose(self.kernel, candidates)
            self.db.set_study_config(self.study, config)
        return make_strategy(self.kernel, self.hardware, self.config, self.db,
                             [tuple(t) for t in config["warm_start"]])

    def advance(self, n: int) -> int:
        """Draw up to `n` more samples (fewer when the search runs dry or stops); how many came."""
        cfg, before = self.config, len(self.samples)
        if self.strategy is None:
            self.strategy = self._warm_strategy()
        target = min(cfg.budget, before + n)
        stuck = 0
        while len(self.samples) < target and self.stopped is None:
            if cfg.time_budget is not None and time.monotonic() - self._started > cfg.time_budget:
                break
            proposals = self._ask()
            if not proposals:
                stuck += 1
                if stuck >= 3:
                    self.exhausted = True
                    break
                continue
            stuck = 0
            proposals = proposals[: target - len(self.samples)]
            for proposal, record in zip(proposals, self._evaluate(proposals)):
                self.strategy.tell(proposal, self._evaluated(record, proposal))
            self.stopped = self._all_timed_out()
        return len(self.samples) - before

    def finish(self) -> TuneResult:
        """Stop the workers (and a local LLM server) and sum up."""
        self.close()
        proposer = getattr(self.strategy, "proposer", None)
        if getattr(proposer, "close", None) is not None:
            proposer.close()
        return TuneResult(self.kernel, self.hardware, self.config, self.naive_seconds, self.numpy_seconds,
                          self.numpy_detail, self.samples, dict(getattr(proposer, "stats", {})),
                          time.monotonic() - self._started, self.stopped,
                          dict(getattr(self.strategy, "stats", {})), self.backend.stats())

    def _ask(self, tries: int = 8) -> list[Proposal]:
        """New proposals: one ask of the strategy, or, when the backend has many runners, as many
        asks as fill them (MCTS expands other nodes while its earlier children are in flight)."""
        seen = {s.key for s in self.samples}
        batch: list[Proposal] = []
        for _ in range(tries):
            for p in self.strategy.ask():
                if p.schedule.key not in seen:
                    seen.add(p.schedule.key)
                    batch.append(p)
            if len(batch) >= self.backend.parallelism:
                break
        return batch

    def best_schedule_so_far(self) -> Schedule | None:
        best = fastest(self.samples)
        return best.schedule if best else None

    def _all_timed_out(self) -> str | None:
        """Why to stop, when the first candidates measured all ran out of time: more of the
        same would only spend the time limit again and again."""
        measured = [s for s in self.samples if not s.reused]
        if len(measured) < EARLY_TIMEOUTS or any(s.status != Status.TIMEOUT.value for s in measured):
            return None
        return (f"stopped: the first {len(measured)} candidates all exceeded their time limits "
                f"(compile {self.limits.compile_limit:g} s, run {self.limits.run_limit:g} s); this kernel's "
                "schedules compile or run too slowly to tune here: raise --compile-timeout/--run-timeout, "
                "or tune a smaller piece of it")

    def _evaluated(self, r: SampleRecord, p: Proposal) -> Evaluated:
        return Evaluated(r.schedule, r.status, r.seconds, r.speedup, r.reason, r.rationale, r.parent, p.edit)

    def _evaluate(self, proposals: list[Proposal]) -> list[SampleRecord]:
        """Records for the proposals, in order: from the database where known, measured otherwise.
        Each measurement and its sample row are written as soon as it lands."""
        kfp, hfp = self.kernel.fingerprint, self.hardware.fingerprint
        base = len(self.samples)
        records: list[SampleRecord | None] = [None] * len(proposals)
        try:
            to_measure = []
            for i, p in enumerate(proposals):
                known = self.db.measurement(kfp, hfp, p.schedule.key)
                if known is None:
                    try:
                        to_measure.append((i, p, render(p.schedule, self.kernel)))
                        continue
                    except ScheduleError as err:  # proposers check legality; this is a last guard
                        known = Measurement(Status.APPLY_ERROR, reason=str(err))
                        self._write(records, i, base, p, known, new=True, reused=True)
                        continue
                self._write(records, i, base, p, known, new=False, reused=True)
            candidates = [Candidate(script.text, p.schedule.threads) for _, p, script in to_measure]
            # A candidate 4x slower than the best so far is timed once: it cannot win.
            cutoff = 4 * self.best_seconds if self.best_seconds else None
            for j, m in (self.measurer.measure_many(candidates, cutoff) if candidates else []):
                i, p, script = to_measure[j]
                m.reason = script.explain(m.reason) if m.reason else ""
                self._write(records, i, base, p, m, new=True, reused=False)
        finally:  # an interrupt or a database error mid-batch keeps what was measured for the report
            for r in records:
                if r is not None:
                    self._keep(r)
        return records

    def _write(self, records: list, i: int, base: int, p: Proposal, m: Measurement, new: bool, reused: bool) -> None:
        """Sample `base + i`: its record in `records[i]` and its row (with its measurement when `new`) in one
        transaction, an interrupt held until both are written: the report and a resumed run count
        what the database holds."""
        with deferred_interrupts():
            records[i] = self._record(base + i, p, m, reused)  # a database that fails to write it leaves it in the report
            with self.db.transaction():
                if new:
                    self.db.record_measurement(self.kernel.fingerprint, self.hardware.fingerprint, p.schedule.key,
                                               p.schedule.to_json(), m)
                self.db.add_sample(self.study, base + i, p.schedule.key, p.parent_key, p.proposer, p.rationale)

    def _keep(self, r: SampleRecord) -> None:
        self.samples.append(r)
        if r.seconds and (self.best_seconds is None or r.seconds < self.best_seconds):
            self.best_seconds = r.seconds
        if self.on_sample:
            self.on_sample(r, self)

    def _record(self, seq: int, p: Proposal, m: Measurement, reused: bool) -> SampleRecord:
        speedup = self.naive_seconds / m.seconds if m.ok and m.seconds and self.naive_seconds else None
        return SampleRecord(seq, p.schedule.key, p.schedule, m.status.value, m.seconds if m.ok else None, speedup,
                            m.reason, p.proposer, p.rationale, p.parent_key, reused, m)
