"""Stage 2: model roles (image encoder, text encoder, language model) and their implementations."""
