"""From an instruct model's answer to the program (codealign.answers), on answers shaped
like SmolLM2-135M-Instruct's to HumanEval prompts."""

from __future__ import annotations

from dataclasses import asdict

from codealign.answers import (
    AnswerReport,
    code_in_text,
    definitions_only,
    longest_parsing_prefix,
    pick_code,
    program_from_answer,
    prompt_imports,
)
from codealign.prompting import answer_prefix, chat_fields
from codealign.tasks import AssertsSuite, Task

PROMPT = (
    "from typing import List\n\n\n"
    "def below_zero(operations: List[int]) -> bool:\n"
    '    """Whether the balance ever falls below zero."""\n'
)
TASK = Task("T/0", PROMPT, "below_zero", AssertsSuite(("assert below_zero([1, -2])",)))
RIGHT = (
    "def below_zero(operations: List[int]) -> bool:\n"
    "    balance = 0\n"
    "    for op in operations:\n"
    "        balance += op\n"
    "        if balance < 0:\n"
    "            return True\n"
    "    return False\n"
)


def test_a_fenced_answer_with_prose_gives_its_function_and_the_prompts_imports() -> None:
    answer = f"Here is the function:\n\n```python\n{RIGHT}```\n\nIt keeps a running balance."
    program, report = program_from_answer(answer, "below_zero", prompt=PROMPT)
    assert program == "from typing import List\n" + RIGHT
    assert report == AnswerReport("fence", "defined", False, 0)


def test_the_block_that_defines_the_entry_point_wins_over_a_longer_example() -> None:
    usage = "```python\n" + "print(below_zero([1, 2, 3]))\n" * 10 + "```"
    answer = f"```python\n{RIGHT}```\nExample:\n{usage}"
    assert pick_code(answer, "below_zero") == (RIGHT, "fence")
    # Without a block that defines it, the longest block.
    assert pick_code("```\na = 1\n```\n```\nbb = 22\n```", "f") == ("bb = 22\n", "fence")


def test_unfenced_code_is_found_in_prose() -> None:
    answer = f"Sure! Here's a solution.\n\n{RIGHT}\nThis works because we track the sum."
    assert code_in_text(answer) == RIGHT + "\n"
    program, report = program_from_answer(answer, "below_zero", prompt=PROMPT)
    assert (
        program.startswith("from typing import List\ndef below_zero") and report.code_from == "text"
    )
    # Code alone (no prose) is taken whole.
    assert pick_code(RIGHT, "below_zero") == (RIGHT, "text")
    # Prose alone is nothing code-like: it continues the prompt, and fails as a body would.
    program, report = program_from_answer("I cannot do that.", "below_zero", prompt=PROMPT)
    assert report.code_from == "none" and program == PROMPT + "I cannot do that."


def test_the_models_own_examples_and_demos_are_dropped() -> None:
    wrong_example = "assert below_zero([1, 2]) == True\n"  # the model's own mistake
    demo = 'if __name__ == "__main__":\n    print(below_zero([1]))\n'
    code = f"import math\nLIMIT = 0\n{RIGHT}\nprint(below_zero([-1]))\n{wrong_example}{demo}"
    kept, dropped = definitions_only(code)
    assert dropped == 3
    assert kept == f"import math\nLIMIT = 0\n{RIGHT}\n"
    # Conditional imports and definitions stay; a loop at the top level does not.
    guarded = "try:\n    from math import comb\nexcept ImportError:\n    comb = None\n"
    versioned = "import sys\nif sys.version_info >= (3, 8):\n    def g():\n        pass\n"
    loop = "for i in range(3):\n    print(i)\n"
    assert definitions_only(guarded + versioned + loop) == (guarded + versioned, 1)
    # A module docstring stays (it is harmless) and is not counted.
    assert definitions_only('"""doc"""\nx = 1\n') == ('"""doc"""\nx = 1\n', 0)


def test_an_answer_cut_at_the_token_limit_keeps_its_complete_statements() -> None:
    cut = f"```python\n{RIGHT}\n\ndef helper(x):\n    return [x for x in"
    program, report = program_from_answer(cut, "below_zero", prompt=PROMPT)
    assert program == "from typing import List\n" + RIGHT + "\n\n"
    assert report.cut_to_parse and report.entry_point == "defined"
    assert longest_parsing_prefix("x = (1,\n") == ""
    assert longest_parsing_prefix("x = 1\ny = (\n") == "x = 1\n"


def test_a_body_continues_the_prompt_and_a_wrong_name_is_reported() -> None:
    line = "    return any(sum(operations[:i + 1]) < 0 for i in range(len(operations)))"
    body = f"```python\n{line}\n```"
    program, report = program_from_answer(body, "below_zero", prompt=PROMPT)
    assert program.startswith(PROMPT) and "return any(" in program
    assert report.entry_point == "body" and not report.cut_to_parse
    renamed = RIGHT.replace("def below_zero", "def check_balance")
    program, report = program_from_answer(f"```python\n{renamed}```", "below_zero", prompt=PROMPT)
    assert report.entry_point == "other_name"
    assert program.startswith(PROMPT)  # the prompt's function stays a stub, and fails


def test_a_prose_task_gets_no_prompt_in_front() -> None:
    text_task = Task(
        "M/1", "Write a function f.", "f", AssertsSuite(("assert f()",)), prompt_style="text"
    )
    fields = chat_fields(text_task, "```python\ndef f():\n    return True\n```")
    assert fields["solution"] == "def f():\n    return True\n"
    assert fields["answer"] == asdict(AnswerReport("fence", "defined", False, 0))


def test_the_answer_prefix_is_part_of_the_answer() -> None:
    assert answer_prefix(TASK, "none") == ""
    assert answer_prefix(TASK, "fence") == "```python\n"
    assert answer_prefix(TASK, "prompt") == "```python\n" + PROMPT
    # The model continued the prompt's function; generation stopped before the fence.
    continuation = RIGHT.split('"""\n', 1)[-1].split("\n", 1)[1]
    fields = chat_fields(TASK, continuation, prefix=answer_prefix(TASK, "prompt"))
    assert fields["raw_output"] == continuation
    assert fields["solution"] == PROMPT + continuation
    assert fields["answer"]["entry_point"] == "defined"


def test_prompt_imports() -> None:
    assert prompt_imports(PROMPT) == "from typing import List\n"
    assert prompt_imports("import math\nimport re\n\ndef f():\n    import os\n") == (
        "import math\nimport re\n"
    )
