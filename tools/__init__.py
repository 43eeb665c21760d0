"""The classroom kit: commands a teacher runs from the repository (they read `notebooks/` and `tests/`, so they
are not part of the installed `bertnb` package). One job per module:

- `exercises`        finds each chapter's exercise stubs and links each to its reference solution in `tests/`
- `student_copies`   every chapter with its outputs cleared, to hand out
- `solved_copies`    every chapter with each stub replaced by its reference solution, executed
- `nbgrader_release` every chapter as an nbgrader source assignment (solution and autograded-test cells)
- `wheelhouse`       every wheel the course needs, for an offline `make setup WHEELHOUSE=...`

docs/TEACHING.md is the guide that uses them.
"""
