"""Disaster-recovery steps: scenarios, registry storage backup/destroy/restore, digest replay,
and the transparency log's stale restore. The drill (`harness.drills.dr`) runs them in order."""
