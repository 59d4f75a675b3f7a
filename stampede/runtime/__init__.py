"""Processes: the server and its workers, lifecycle, the embedded Valkey, the `stampede` command."""
