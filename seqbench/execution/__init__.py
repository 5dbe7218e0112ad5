"""Many runs and where they execute: the grid, the planned run, run order, and the executors (in-process, processes, Ray)."""
