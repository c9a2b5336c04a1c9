"""The tuning database: every measurement, written the moment it is measured.

SQLite in WAL mode. A measurement belongs to (kernel, hardware, schedule) and
is shared by every study of that kernel on that hardware: a schedule is never
measured twice. A study (one strategy/proposer/seed on one kernel) lists the
samples it drew, in order; rerunning the same study replays them and goes on.
"""
from __future__ import annotations

import contextlib
import functools
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rcompiler.measure.results import Measurement, Status, Timing

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS measurements (
    kernel TEXT NOT NULL, hardware TEXT NOT NULL, schedule_key TEXT NOT NULL,
    schedule TEXT NOT NULL, status TEXT NOT NULL, seconds REAL, median REAL, repeats INTEGER,
    reason TEXT, max_error REAL, build_seconds REAL, run_seconds REAL, created REAL NOT NULL,
    PRIMARY KEY (kernel, hardware, schedule_key));
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, kernel TEXT NOT NULL, hardware TEXT NOT NULL,
    label TEXT, config TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS samples (
    study INTEGER NOT NULL REFERENCES studies(id), seq INTEGER NOT NULL, schedule_key TEXT NOT NULL,
    parent_key TEXT, proposer TEXT, rationale TEXT, created REAL NOT NULL,
    PRIMARY KEY (study, seq), UNIQUE (study, schedule_key));
CREATE TABLE IF NOT EXISTS baselines (
    kernel TEXT NOT NULL, hardware TEXT NOT NULL, kind TEXT NOT NULL, seconds REAL, detail TEXT,
    created REAL NOT NULL, PRIMARY KEY (kernel, hardware, kind));
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY, response TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER,
    created REAL NOT NULL);
"""


@dataclass
class Sample:
    """One sample of a study: the schedule drawn and its measurement."""

    seq: int
    schedule_key: str
    schedule: list
    measurement: Measurement
    parent_key: str | None = None
    proposer: str = ""
    rationale: str = ""


class DatabaseError(RuntimeError):
    """The tuning database cannot be opened, read or written; the message says which and why."""


_LOCK = threading.RLock()


def _guarded(method):
    """Turn SQLite and file-system errors into a DatabaseError that names the file; one call at
    a time (the tasks of a module are tuned from several threads when a cluster times them)."""
    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            with _LOCK:
                return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as err:
            raise DatabaseError(f"tuning database {self.path}: {_explain(err)}") from err
    return call


def _explain(err: BaseException) -> str:
    text = str(err)
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return f"{text}: the file is damaged; move it aside (the next run starts a new one) or pass another --db"
    if "full" in text:
        return f"{text}: free some space; everything measured before this is in the database"
    if "readonly" in text or "read-only" in text or "unable to open" in text or isinstance(err, OSError):
        return f"{text}: the path must be a writable file; pass another --db"
    return text


class Database:
    @_guarded
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        # A damaged file must fail loudly here, never read as an empty study.
        problems = [r[0] for r in self.conn.execute("PRAGMA quick_check").fetchall()]
        if problems != ["ok"]:
            raise sqlite3.DatabaseError("database disk image is malformed (" + "; ".join(problems[:3])[:200] + ")")
        self.conn.executescript(SCHEMA)
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is None:
            self.conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise DatabaseError(f"{self.path}: database schema {row[0]} is not {SCHEMA_VERSION}; use a new --db")

    @_guarded
    def close(self) -> None:
        self.conn.close()

    @contextlib.contextmanager
    def transaction(self):
        """The writes in the block land together or not at all (a sample and its measurement)."""
        with _LOCK:
            self._execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.conn.in_transaction:  # SQLite ends some failed transactions itself (a full disk)
                    self._execute("ROLLBACK")
                raise
            self._execute("COMMIT")

    @_guarded
    def _execute(self, sql: str) -> None:
        self.conn.execute(sql)

    # -- measurements --------------------------------------------------------
    @_guarded
    def measurement(self, kernel: str, hardware: str, schedule_key: str) -> Measurement | None:
        row = self.conn.execute(
            "SELECT status, seconds, median, repeats, reason, max_error, build_seconds, run_seconds "
            "FROM measurements WHERE kernel=? AND hardware=? AND schedule_key=?",
            (kernel, hardware, schedule_key)).fetchone()
        return _to_measurement(row) if row else None

    @_guarded
    def record_measurement(self, kernel: str, hardware: str, schedule_key: str, schedule: list,
                           m: Measurement) -> None:
        t = m.timing
        self.conn.execute(
            "INSERT OR REPLACE INTO measurements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (kernel, hardware, schedule_key, json.dumps(schedule), m.status.value,
             t.min if t else None, t.median if t else None, t.repeats if t else None,
             m.reason, m.max_error, m.build_seconds, m.run_seconds, time.time()))

    def best(self, kernel: str, hardware: str) -> tuple[list, Measurement] | None:
        """`apply best`: the fastest verified schedule known for a kernel on this hardware."""
        found = self.fastest(kernel, hardware, 1)
        return found[0] if found else None

    @_guarded
    def fastest(self, kernel: str, hardware: str, n: int) -> list[tuple[list, Measurement]]:
        """The `n` fastest verified schedules known for a kernel on this hardware, fastest first."""
        rows = self.conn.execute(
            "SELECT schedule, status, seconds, median, repeats, reason, max_error, build_seconds, run_seconds "
            "FROM measurements WHERE kernel=? AND hardware=? AND status='ok' ORDER BY seconds, schedule_key LIMIT ?",
            (kernel, hardware, n)).fetchall()
        return [(json.loads(row[0]), _to_measurement(row[1:])) for row in rows]

    # -- studies -------------------------------------------------------------
    @_guarded
    def study(self, name: str, kernel: str, hardware: str, label: str, config: dict) -> int:
        """The id of study `name`, created if new (resumable: same name, same study)."""
        row = self.conn.execute("SELECT id FROM studies WHERE name=?", (name,)).fetchone()
        if row:
            return row[0]
        cur = self.conn.execute("INSERT INTO studies (name, kernel, hardware, label, config, created) "
                                "VALUES (?,?,?,?,?,?)", (name, kernel, hardware, label, json.dumps(config), time.time()))
        return cur.lastrowid

    @_guarded
    def study_config(self, study: int) -> dict:
        row = self.conn.execute("SELECT config FROM studies WHERE id=?", (study,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    @_guarded
    def set_study_config(self, study: int, config: dict) -> None:
        self.conn.execute("UPDATE studies SET config=? WHERE id=?", (json.dumps(config), study))

    @_guarded
    def kernels(self, hardware: str) -> list[tuple[str, str]]:
        """(kernel fingerprint, label) of every kernel studied on this hardware."""
        return self.conn.execute("SELECT DISTINCT kernel, label FROM studies WHERE hardware=?", (hardware,)).fetchall()

    @_guarded
    def add_sample(self, study: int, seq: int, schedule_key: str, parent_key: str | None,
                   proposer: str, rationale: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?,?,?)",
                          (study, seq, schedule_key, parent_key, proposer, rationale, time.time()))

    @_guarded
    def samples(self, study: int) -> list[Sample]:
        rows = self.conn.execute(
            "SELECT s.seq, s.schedule_key, m.schedule, s.parent_key, s.proposer, s.rationale, "
            "m.status, m.seconds, m.median, m.repeats, m.reason, m.max_error, m.build_seconds, m.run_seconds "
            "FROM samples s JOIN studies st ON st.id = s.study "
            "JOIN measurements m ON m.kernel = st.kernel AND m.hardware = st.hardware AND m.schedule_key = s.schedule_key "
            "WHERE s.study=? ORDER BY s.seq", (study,)).fetchall()
        return [Sample(r[0], r[1], json.loads(r[2]), _to_measurement(r[6:]), r[3], r[4] or "", r[5] or "")
                for r in rows]

    # -- baselines -------------------------------------------------------------
    @_guarded
    def baseline(self, kernel: str, hardware: str, kind: str) -> tuple[float | None, dict] | None:
        row = self.conn.execute("SELECT seconds, detail FROM baselines WHERE kernel=? AND hardware=? AND kind=?",
                                (kernel, hardware, kind)).fetchone()
        return (row[0], json.loads(row[1] or "{}")) if row else None

    @_guarded
    def record_baseline(self, kernel: str, hardware: str, kind: str, seconds: float | None, detail: dict) -> None:
        self.conn.execute("INSERT OR REPLACE INTO baselines VALUES (?,?,?,?,?,?)",
                          (kernel, hardware, kind, seconds, json.dumps(detail), time.time()))

    # -- LLM response cache ------------------------------------------------------
    @_guarded
    def cached_response(self, key: str) -> dict | None:
        row = self.conn.execute("SELECT response FROM llm_cache WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    @_guarded
    def cache_response(self, key: str, response: dict, prompt_tokens: int, completion_tokens: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO llm_cache VALUES (?,?,?,?,?)",
                          (key, json.dumps(response), prompt_tokens, completion_tokens, time.time()))


def _to_measurement(row) -> Measurement:
    status, seconds, median, repeats, reason, max_error, build_s, run_s = row
    timing = Timing(seconds, median, repeats) if seconds is not None else None
    return Measurement(Status(status), timing, reason or "", max_error, build_s or 0.0, run_s or 0.0)
