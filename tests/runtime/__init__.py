"""Runtime tests: memory planner, optimization profiles, execution contexts, bench."""
