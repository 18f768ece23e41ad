"""The containerized lab: images, services, lifecycle and fault controls."""
