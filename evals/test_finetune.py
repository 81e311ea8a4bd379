"""``pytest evals/``: the evaluation suite, shipped inside the package as ``simonsca.evals``
(so that ``pytest --pyargs simonsca.evals`` runs the same tests from an installed wheel)."""

from simonsca.evals.test_finetune import *
