"""The contract every exercise check of the notebooks keeps (chapters 00-10, `bertnb.checks`): it accepts the
reference solution, rejects a wrong answer with "not right yet" and a hint that names the mistake, reports an
untouched stub as "not solved yet", and never raises. The test files of each chapter list their cases; these
are the assertions they share."""


def unsolved(*args, **kwargs):  # what the notebooks hold before the student writes anything
    raise NotImplementedError  # your code here


def assert_accepted(check, reference, capsys) -> None:
    assert check(reference) is True
    assert "correct" in capsys.readouterr().out


def assert_rejected(check, wrong, hint: str, capsys) -> None:
    assert check(wrong) is False
    out = capsys.readouterr().out
    assert "not right yet" in out and hint in out, out


def assert_not_solved(check, capsys, answer=unsolved) -> None:
    assert check(answer) is False  # a stub that raises NotImplementedError, or an answer left as None
    assert "not solved yet" in capsys.readouterr().out
