"""Samples a report.json lacks, from the tuning database (python -m rcompiler.report --db)."""
from __future__ import annotations

import json
from pathlib import Path

from rcompiler.db import Database


def samples_from_db(data: dict, db_path: str | Path) -> dict:
    """The report with each study's samples as the database holds them, where it holds more (a
    run killed before it wrote report.json, or a study that went on after): the report's own
    settings name the study."""
    if not Path(db_path).is_file():
        raise FileNotFoundError(f"{db_path}: no such tuning database")
    db = Database(db_path)
    try:
        hw = data["hardware"]["fingerprint"]
        config = {"strategy": data["strategy"], "proposer": data.get("proposer") or "-", "seed": data["seed"],
                  "threads": data["threads"]}
        studies = [(t, "samples_detail") for t in data.get("tasks", [])] if "module" in data else [(data, "samples")]
        for study, key in studies:
            # The Database looks studies up by name only; these are the fields the name is made of.
            rows = db.conn.execute("SELECT id, config FROM studies WHERE kernel=? AND hardware=?",
                                   (study.get("kernel_fingerprint"), hw)).fetchall()
            found = [i for i, c in rows if json.loads(c or "{}") == config]
            stored = db.samples(found[0]) if found else []
            if len(stored) > len(study.get(key) or []):
                study[key] = [_stored_sample(s, study.get("naive_seconds"), study.get("flops")) for s in stored]
    finally:
        db.close()
    return data


def _stored_sample(s, naive: float | None, flops: int | None) -> dict:
    m = s.measurement
    seconds = m.seconds if m.ok else None
    return {"seq": s.seq, "status": m.status.value, "seconds": seconds,
            "gflops": flops / seconds / 1e9 if flops and seconds else None,
            "speedup": naive / seconds if naive and seconds else None, "hash": s.schedule_key,
            "parent": s.parent_key, "proposer": s.proposer, "rationale": s.rationale, "reason": m.reason,
            "schedule": s.schedule, "reused": True}
