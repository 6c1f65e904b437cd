"""Competition rules: reading and validating the competition files, the leaderboard metric, submissions and
their ledger, prediction files, ROUGE reports. Imports neither torch nor the harness."""
