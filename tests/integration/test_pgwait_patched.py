"""Under gevent's patches, PostgreSQL queries wait through core.pgwait and let other greenlets run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import (
    drop_postgres_schemas,
    new_postgres_schema,
    postgres_unavailable,
    require_service,
)

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import gevent.monkey; gevent.monkey.patch_all()
    import sys, gevent, psycopg.waiting
    from core import pgwait
    from core.postgres import PostgresDatabase
    db = PostgresDatabase(sys.argv[1]); db.open()
    assert psycopg.waiting.wait is pgwait.wait, "not installed"
    ticks = []
    def tick():
        while True:
            ticks.append(1); gevent.sleep(0.01)
    ticker = gevent.spawn(tick)
    assert db.run(lambda c: c.execute("SELECT 7 FROM pg_sleep(0.3)").fetchone()[0]) == 7
    ticker.kill(); db.close()
    print(len(ticks))
    """
)


def test_queries_wait_through_pgwait_and_let_others_run() -> None:
    require_service(postgres_unavailable())
    try:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT, new_postgres_schema()],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        drop_postgres_schemas()
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 10  # 0.3 s of query, a tick every 10 ms
