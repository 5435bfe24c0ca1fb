"""Deploy time: the work pool, the deployments, the automations, and writing the blocks."""
