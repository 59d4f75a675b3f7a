"""Cutting a page off from everything but the service under test."""


async def offline(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Abort every request that leaves the service; returns the list of those tried."""
    tried: list[str] = []

    async def guard(route) -> None:  # type: ignore[no-untyped-def]
        url = route.request.url
        if url.startswith("http://127.0.0.1:"):
            await route.continue_()
        else:
            tried.append(url)
            await route.abort()

    await page.route("**/*", guard)
    return tried
