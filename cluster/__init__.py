"""The cluster manager: one REST face for many supervisor nodes (not built yet)."""
