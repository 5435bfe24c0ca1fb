"""Email jobs: message models, rendering, providers."""
