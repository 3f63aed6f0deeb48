"""Vision for Llama 3 [P §7]: an image encoder, cross-attention adapters, video, image-text data."""
