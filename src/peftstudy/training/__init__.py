"""Training: the loop, checkpoints, OOM retry, data-parallel and sharded runs, and the bases (pretrained
here or fetched) that every run starts from."""
