"""Models of the automation app (filled by later issues)."""
