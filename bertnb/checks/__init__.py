"""Exercise checks for the notebooks, one module per chapter (`from bertnb.checks import ch03`).

A check never raises: an unsolved exercise (the answer is None, or the student's function still raises
NotImplementedError) prints "not solved yet", a wrong answer prints what is wrong, a right one prints
"correct". Each returns True only for a correct answer, so tests can show a check rejects wrong answers
and accepts the reference solution (kept in tests/, not in the notebooks).
"""

from __future__ import annotations

from typing import Any, Callable

NOT_SOLVED = "not solved yet"


class Wrong(Exception):
    """Raised inside a check's test to say what is wrong with the answer."""


def run_check(name: str, answer: Any, test: Callable[[Any], None]) -> bool:
    """Run `test(answer)` and report the outcome in one line, without ever raising."""
    if answer is None:
        print(f"{name}: {NOT_SOLVED}")
        return False
    try:
        test(answer)
    except NotImplementedError:
        print(f"{name}: {NOT_SOLVED}")
        return False
    except Wrong as wrong:
        print(f"{name}: not right yet: {wrong}")
        return False
    except Exception as error:  # a bug in the student's code must not stop the notebook
        print(f"{name}: your code raised {type(error).__name__}: {error}")
        return False
    print(f"{name}: correct")
    return True


def expect(condition: bool, message: str) -> None:
    """Inside a check's test: fail with `message` unless `condition` holds."""
    if not condition:
        raise Wrong(message)


def expect_int(value, what: str) -> int:
    """Inside a check's test: `value` must be an int (a one-element tensor counts); return it as an int."""
    if hasattr(value, "numel") and value.numel() == 1:  # a torch.Tensor holding one number
        value = value.item()
    expect(isinstance(value, int) and not isinstance(value, bool), f"{what} should be an int, got {value!r}")
    return value
