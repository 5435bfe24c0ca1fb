"""Reports: daily statistics, the weekly summary, their rendering, and posting to Slack."""
