"""Stampede's HTTP layer: thin aiohttp apps over `engine.Engine`."""
