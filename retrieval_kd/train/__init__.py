"""Training students from the score store."""
