"""The asyncio runtime: carries out what the sans-I/O core asks (storage,
peer messages, timers) and serves both HTTP dialects."""
