"""One run in this process: the trainer, its stored row and log, re-evaluation, S3-Rec pre-training, the per-run thread scope."""
