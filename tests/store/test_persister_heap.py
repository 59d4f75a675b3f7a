"""The persister's process tunes its garbage collector once its store is open."""

import gc
from typing import Any

from stampede.runtime.persistence import settle_heap


def test_a_batch_of_rows_alive_until_commit_is_not_rescanned_by_the_collector() -> None:
    """Thousands of rows alive at once (one batch) set off no young collection."""
    threshold, collections = gc.get_threshold(), []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    try:
        settle_heap()
        gc.collect()
        gc.callbacks.append(seen)
        try:
            batch = [[i, "claim", "held"] for i in range(20_000)]  # tracked containers
        finally:
            gc.callbacks.remove(seen)
        assert len(batch) == 20_000
        assert collections == []
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
