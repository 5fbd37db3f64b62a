"""The worker's periodic jobs: run once per period across every worker replica."""
