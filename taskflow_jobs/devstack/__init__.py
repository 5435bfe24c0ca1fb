"""The whole system on one machine: `up`, `demo`, the process supervisor, seed data, stand-ins."""
