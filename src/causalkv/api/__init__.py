"""The HTTP API: both dialects (sharded and SyncKV) over one node runtime."""
