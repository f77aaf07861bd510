"""Models of the meta_oauth app (filled by later issues)."""
