"""Autoencoder architectures behind the tokenizers."""
