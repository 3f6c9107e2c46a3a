"""The shop connection: ingest API, API keys, event outbox and webhook delivery."""
