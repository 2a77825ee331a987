from solution import word_count


def test_cases(cases):
    for text, expected in cases:
        assert word_count(text) == expected


def test_returns_plain_dict():
    assert type(word_count("x")) is dict
