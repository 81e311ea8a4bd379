"""The evaluation suite users run: ``pytest evals/`` in a checkout, or
``pytest --pyargs simonsca.evals`` from an installed simonsca."""
