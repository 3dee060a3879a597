"""Stage 2 of ecg2llm: a GPT trained from scratch on ECG tokens, and synthetic ECG generation."""
