"""Training: dataset, official losses, the training loop."""
