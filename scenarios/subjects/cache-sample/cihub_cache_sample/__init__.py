"""A sample package for the cache-poisoning drill: `ORIGIN` says which build was installed."""

ORIGIN = "genuine"
