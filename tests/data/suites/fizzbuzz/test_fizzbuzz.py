from solution import fizzbuzz


def test_first_fifteen():
    assert fizzbuzz(15)[-1] == "FizzBuzz"
    assert fizzbuzz(15)[:5] == ["1", "2", "Fizz", "4", "Buzz"]


def test_zero():
    assert fizzbuzz(0) == []
