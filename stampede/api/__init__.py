"""Stampede's HTTP layer: thin aiohttp apps over `stampede.Engine`."""
