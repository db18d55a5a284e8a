"""Command-line clients of the subsidy-eligibility service."""
