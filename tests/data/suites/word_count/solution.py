from collections import Counter


def word_count(text: str) -> dict[str, int]:
    """Count how often each lower-cased word occurs in text."""
    return dict(Counter(text.lower().split()))
