"""The Kafka listener's request budget: reservations wait their turn while it is short, and
every reservation comes back, whether its request is handled, fails or is cancelled."""

from __future__ import annotations

import asyncio

import pytest

from tidings.server.kafka.budget import RequestBudget


async def settle() -> None:
    """Let every task that can run, run."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_reservations_within_the_budget_are_taken_at_once_and_given_back() -> None:
    async def main() -> None:
        budget = RequestBudget(100)
        await budget.reserve(60)
        await budget.reserve(40)
        assert budget.available == 0
        budget.release(60)
        budget.release(40)
        assert budget.available == 100

    asyncio.run(main())


def test_a_short_budget_serves_waiters_first_come_first_served() -> None:
    async def main() -> list[str]:
        budget = RequestBudget(100)
        await budget.reserve(90)
        served: list[str] = []

        async def take(name: str, size: int) -> None:
            await budget.reserve(size)
            served.append(name)

        tasks = [asyncio.create_task(take("large", 80))]
        await settle()
        # small enough for what is left, but behind the large one: it waits its turn
        tasks.append(asyncio.create_task(take("small", 5)))
        await settle()
        assert served == []
        budget.release(90)
        await asyncio.gather(*tasks)
        assert budget.available == 15
        return served

    assert asyncio.run(main()) == ["large", "small"]


def test_a_cancelled_waiter_leaves_its_turn_to_those_behind_it() -> None:
    async def main() -> None:
        budget = RequestBudget(100)
        await budget.reserve(50)
        large = asyncio.create_task(budget.reserve(80))
        await settle()
        small = asyncio.create_task(budget.reserve(30))
        await settle()
        assert not small.done()
        large.cancel()  # its connection closed while it waited
        await asyncio.wait_for(small, 1)
        assert budget.available == 20
        with pytest.raises(asyncio.CancelledError):
            await large

    asyncio.run(main())


def test_a_waiter_cancelled_as_it_is_granted_gives_its_bytes_back() -> None:
    async def main() -> None:
        budget = RequestBudget(100)
        await budget.reserve(100)
        waiter = asyncio.create_task(budget.reserve(70))
        await settle()
        budget.release(100)  # grants the waiter before its task runs again
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert budget.available == 100

    asyncio.run(main())


def test_a_release_while_a_cancelled_waiter_is_first_skips_it() -> None:
    async def main() -> None:
        budget = RequestBudget(100)
        await budget.reserve(100)
        first = asyncio.create_task(budget.reserve(10))
        await settle()
        second = asyncio.create_task(budget.reserve(20))
        await settle()
        first.cancel()  # cancelled, its cleanup not run yet when the bytes come back
        budget.release(100)
        await asyncio.wait_for(second, 1)
        with pytest.raises(asyncio.CancelledError):
            await first
        assert budget.available == 80

    asyncio.run(main())


def test_a_reservation_over_the_whole_budget_is_refused_rather_than_waiting_forever() -> None:
    async def main() -> None:
        budget = RequestBudget(100)
        await budget.reserve(1)
        with pytest.raises(ValueError, match="can never fit a budget of 100"):
            await budget.reserve(101)
        assert budget.available == 99

    asyncio.run(main())
