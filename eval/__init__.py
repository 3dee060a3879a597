"""Stage 3 of ecg2llm: score synthetic ECGs against held-out real ones."""
