"""Models of the marketing app (filled by later issues)."""
