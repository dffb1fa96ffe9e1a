"""Programs the supervisor launches on behalf of registry entries."""
