"""Email workers: claim a batch, send it, settle each message; the run loop and `consume`."""
