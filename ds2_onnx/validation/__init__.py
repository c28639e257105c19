"""Validation: the original PyTorch + librosa pipeline as reference, WER/CER, latency."""
