"""Services: what a command does, below the command line (typed requests, progress callbacks, no console)."""
