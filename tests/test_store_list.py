"""Store.list_jobs filters across pages: real SQLite, a page of 2 rows so every path turns a page."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hodei.protocol import JobSpec
from hodeid.store import Store


def test_label_and_name_filters_across_pages(tmp_path: Path) -> None:
    async def main() -> None:
        store = await Store.open(tmp_path / "db.sqlite")
        try:
            ids = []
            for n in range(9):
                spec = JobSpec(command=["true"], shell=True, name=f"job-{n}", labels={"odd": str(n % 2)})
                ids.append((await store.insert_job(spec, None, "")).info.id)

            async def listed(limit: int, name: str = "", labels: dict[str, str] | None = None) -> list[int]:
                return [j.info.id async for p in store.list_jobs([], limit, None, page=2, name=name, labels=labels)
                        for j in p]

            odd = [i for n, i in enumerate(ids) if n % 2]
            assert await listed(0, labels={"odd": "1"}) == odd
            assert await listed(3, labels={"odd": "1"}) == odd[-3:]
            assert await listed(10, labels={"odd": "1"}) == odd
            assert await listed(0, name="job-[0-4]", labels={"odd": "0"}) == [ids[0], ids[2], ids[4]]
            assert await listed(2, name="job-?") == ids[-2:]
            assert await listed(0, labels={"odd": "2"}) == []
        finally:
            await store.close()

    asyncio.run(main())
