"""Batch jobs run from cron (``python -m legacy_app.jobs.<name>``)."""
