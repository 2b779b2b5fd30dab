"""What turns a dataset into numbers: read, tokenise, forward, score, store, run as a job.

See docs/ARCHITECTURE.md. This half never imports ches.review."""
