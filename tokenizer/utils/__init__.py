"""Small shared helpers (configs, atomic writes, run metadata, entry-point plumbing).

They live in the first stage's package because data flows one way, ``tokenizer`` -> ``lm`` -> ``eval``:
the later stages may import from here, never the reverse.
"""
