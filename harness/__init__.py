"""CI Intelligence Hub harness: the drills' steps, the pytest plugin and the `cihub` CLI."""
