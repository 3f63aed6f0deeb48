"""Speech for Llama 3 [P §8]: a Conformer encoder, BEST-RQ pre-training, a speech adapter, speech data."""
