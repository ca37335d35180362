"""`gpucloud plan --from-usage`: the usage table read back as model workloads to plan for."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from gpucloud_server.config import CoreSettings
from gpucloud_server.errors import Unavailable
from gpucloud_server.identity.storage import open_database
from gpucloud_server.identity.storage.database import SQLITE_FILE
from gpucloud_server.identity.storage.tables import usage
from gpucloud_sim.models import find_model
from gpucloud_sim.plan import ModelWorkload

# Most recent finished tasks read (all models together), so a large table stays cheap;
# the planner samples its requests from these.
MAX_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class Trace:
    """Per model, the arrival rate over the recorded span and the recorded sizes;
    `skipped` names the recorded models the simulator's catalog does not know."""

    workloads: tuple[ModelWorkload, ...]
    skipped: tuple[str, ...]


async def read_trace(
    settings: CoreSettings, *, since_ms: int | None = None, models: Sequence[str] = ()
) -> Trace:
    """The usage rows since `since_ms` (of `models` only, when given) as workloads.

    ValueError when there is no database, no usage table or too few rows to give a
    rate; nothing is written (no migration, no directory created).
    """
    if settings.database_url is None and not (Path(settings.data_dir) / SQLITE_FILE).is_file():
        raise ValueError(f"no usage database at {Path(settings.data_dir) / SQLITE_FILE}")
    wanted = {find_model(name).id for name in models}
    query = sa.select(
        usage.c.model, usage.c.prompt_tokens, usage.c.completion_tokens, usage.c.created_ms
    ).order_by(usage.c.created_ms.desc())
    if since_ms is not None:
        query = query.where(usage.c.created_ms >= since_ms)
    if wanted:
        query = query.where(usage.c.model.in_(sorted(wanted)))
    db = open_database(settings)
    try:
        async with db.read() as conn:
            result = await conn.execute(query.limit(MAX_ROWS))
            rows = [(str(m), int(p), int(c), int(t)) for m, p, c, t in result]
    except (sa_exc.SQLAlchemyError, Unavailable) as error:
        reason = str(error).splitlines()[0]
        raise ValueError(f"cannot read the usage table: {reason}") from None
    finally:
        await db.close()
    return _workloads(rows)


def _workloads(rows: Sequence[tuple[str, int, int, int]]) -> Trace:
    by_model: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for model, prompt, completion, created_ms in rows:
        if prompt >= 1:  # a task refused before its prompt was counted never ran
            by_model[model].append((created_ms, prompt, max(1, completion)))
    if not by_model:
        raise ValueError("the usage table holds no finished tasks in that window")
    workloads, skipped = [], []
    for name, tasks in sorted(by_model.items()):
        try:
            model = find_model(name).id
        except ValueError:
            skipped.append(name)
            continue
        span_s = (max(t[0] for t in tasks) - min(t[0] for t in tasks)) / 1000
        if len(tasks) < 2 or span_s <= 0:
            raise ValueError(f"{name}: too few recorded requests to measure an arrival rate")
        sizes = tuple((prompt, completion) for _, prompt, completion in tasks)
        # n arrivals span n - 1 gaps.
        workloads.append(ModelWorkload(model, (len(tasks) - 1) / span_s, sizes=sizes))
    if not workloads:
        raise ValueError(f"no recorded model is in the simulator's catalog ({', '.join(skipped)})")
    return Trace(tuple(workloads), tuple(skipped))
