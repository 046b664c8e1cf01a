"""What a task gives back: its git branch, artifacts, live detail, stats, exports and cleanup."""
