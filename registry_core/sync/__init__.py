"""The connected registry: sync from a parent registry on a schedule and window, ReadOnly or
ReadWrite, and staging of a deployment's images before a maintenance window.

Modules: `connection.py` (the connection string), `schedule.py` (cron and window),
`client.py` (the parent registry over the distribution API: Basic and Bearer auth, retries,
resumed downloads), `engine.py` (one sync run), `staging.py` (stages and pins).
"""
