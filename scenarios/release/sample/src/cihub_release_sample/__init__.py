"""The release drill's sample subject: a tiny module that builds to a reproducible wheel."""

GREETING = "hello from the release sample"
